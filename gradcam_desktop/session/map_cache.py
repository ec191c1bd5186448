"""The worker's bounded cache of computed maps: an LRU with byte accounting.

Keys are ``map_key(image key, model generation, layer, class index, method, score)``; values are the
``MapResult``s the worker emits, whose ``raw`` and ``display`` arrays are what the bytes count
(maps at image resolution can weigh tens of MB each). Kept apart from worker.py so the thread
module reads as the loop and its handlers, and so the eviction rule is one small class of its
own. Not thread-safe: only the worker thread writes it (``keys()`` is a snapshot for tests and
diagnostics).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["MapCache", "map_key", "result_bytes", "score_key"]


def score_key(versus: int | None = None, counterfactual: bool = False, region: Any = None) -> Any:
    """Which score a map explains, as a key: "class", ("versus", B) or "counterfactual" (with a
    segmentation region: (that, region))."""
    if counterfactual:
        kind: Any = "counterfactual"
    else:
        kind = "class" if versus is None else ("versus", int(versus))
    return kind if region is None else (kind, tuple(round(float(side), 6) for side in region))


def map_key(image_key: str, generation: int, layer: str, class_index: int, method: str,
            versus: int | None = None, counterfactual: bool = False, region: Any = None) -> tuple:
    """The cache key of one map: everything that changes the map (the model by its generation).

    Method and score are part of it: Grad-CAM++ of 'star' versus 'circle' is another map than
    Grad-CAM of 'star', though the engine may reuse the same capture for both.
    """
    return (image_key, int(generation), layer, int(class_index), getattr(method, "name", method),
            score_key(versus, counterfactual, region))


def result_key(result: Any) -> tuple:
    """``map_key`` of a finished ``MapResult`` (its picture key and generation set)."""
    return map_key(result.image_key, result.generation, result.layer, result.class_index, result.method,
                   result.versus_index, result.counterfactual, getattr(result, "region", None))


def result_bytes(result: Any) -> int:
    """Bytes a cached result holds: its ``raw`` map plus its ``display`` map if it has one."""
    display = getattr(result, "display", None)
    return int(result.raw.nbytes) + (int(display.nbytes) if display is not None else 0)


class MapCache:
    """At most ``max_entries`` results and ``max_bytes`` of map arrays; least recently used go first.

    ``max_entries <= 0`` turns caching off (``put`` stores nothing). A single result larger than
    ``max_bytes`` is not kept at all (it would evict everything else and then itself).
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0

    def get(self, key: tuple) -> Any | None:
        """The cached result (now the most recently used), or None."""
        cached = self._entries.get(key)
        if cached is not None:
            self._entries.move_to_end(key)
        return cached

    def __contains__(self, key: object) -> bool:
        # A look that does not count as a use: precompute asks, it does not fetch.
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: tuple, result: Any) -> None:
        """Store ``result`` under ``key``, then evict from the old end until within both bounds."""
        if self._max_entries <= 0:
            return
        if key in self._entries:
            self._bytes -= result_bytes(self._entries.pop(key))
        self._entries[key] = result
        self._bytes += result_bytes(result)
        while self._entries and (len(self._entries) > self._max_entries or self._bytes > self._max_bytes):
            _key, old = self._entries.popitem(last=False)
            self._bytes -= result_bytes(old)

    def retain(self, keep: Callable[[tuple], bool]) -> None:
        """Forget the maps whose key ``keep`` refuses (closed pictures); the others keep their order."""
        for key in [key for key in self._entries if not keep(key)]:
            self._bytes -= result_bytes(self._entries.pop(key))

    def clear(self) -> None:
        """Forget every map (a new model invalidates them all)."""
        self._entries.clear()
        self._bytes = 0

    def nbytes(self) -> int:
        """Bytes of the cached ``raw`` and ``display`` arrays."""
        return self._bytes

    def keys(self) -> list[tuple]:
        """The keys, least recently used first (a snapshot)."""
        return list(self._entries.keys())
