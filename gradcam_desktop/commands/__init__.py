"""The bodies of the ``gradcam`` sub-commands (argument parsing is in cli.py), one module per job:

    shared.py      what they share: one-line messages, output-path checks, opening the model and pictures,
                   the map options, a map's description and notes, progress bars
    model_info.py  layers, predict, methods, zoo: what the model and the app offer
    maps.py        explain (one picture) and batch (a folder, results.csv)
    trust.py       trust (one picture's faithfulness figures) and batch --trust's columns
    triage.py      triage (a labelled folder: triage.csv, confusion.csv, the mistakes' maps)
    patterns.py    patterns (a labelled folder's maps clustered per class: patterns.csv, clusters.csv)
    report.py      report (one self-contained HTML page: accuracy, clusters, mistakes)

Every module imports ``shared`` and nothing imports back: no cycles. Importing this package imports
TensorFlow (the engine); cli.py does so only once the log level is set.
"""

from __future__ import annotations

from collections.abc import Callable

from . import maps, model_info, patterns, report, triage, trust
from .shared import describe, one_line

__all__ = ["COMMANDS", "describe", "one_line"]

#: Sub-command name → its body (args → exit code).
COMMANDS: dict[str, Callable[..., int]] = {
    "layers": model_info.layers, "predict": model_info.predict, "methods": model_info.methods, "zoo": model_info.zoo,
    "explain": maps.explain, "batch": maps.batch, "trust": trust.run, "triage": triage.run, "patterns": patterns.run,
    "report": report.run,
}
