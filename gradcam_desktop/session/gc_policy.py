"""Keep Python's full garbage collections from freezing the window.

A loaded model and its traced functions are hundreds of thousands of long-lived Python objects.
Python's full (generation 2) collection walks all of them, holding the interpreter lock, on
whichever thread triggers it: measured 58–228 ms pauses while layers were traced, every one a
stall of the UI thread (benchmarks/bench_window.py, heartbeat (b): 189–235 ms worst gap).
``gc.freeze()`` moves the objects alive now out of the collector's view, so later collections
only walk what is new. A new model unfreezes them first, so the old model's objects can still
be freed.
"""

from __future__ import annotations

import gc

__all__ = ["after_model_load", "keep_long_lived"]


def after_model_load() -> None:
    """The old model's objects become collectable, are collected, and the new model's are frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def keep_long_lived() -> None:
    """Freeze what exists now (a traced layer's graph): cheap, no collection."""
    gc.freeze()
