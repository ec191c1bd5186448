"""The worker's vocabulary and memory, through their public API: requests, precompute plans, map cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gradcam_desktop.core.images import find_images
from gradcam_desktop.core.types import MapResult, Prediction
from gradcam_desktop.session.map_cache import MapCache, map_key, result_bytes
from gradcam_desktop.session.requests import Explain, LoadModel, Precompute, expand_sources
from gradcam_desktop.session.results import map_result


def write_png(path: Path) -> Path:
    cv2.imwrite(str(path), np.full((6, 5, 3), 90, np.uint8))
    return path


def _result(raw_shape=(4, 4), display_shape=None, class_index=0) -> MapResult:
    prediction = Prediction(np.array([0.7, 0.2, 0.1], np.float32), [(0, "a", 0.7), (1, "b", 0.2), (2, "c", 0.1)],
                            "softmax")
    display = None if display_shape is None else np.zeros(display_shape, np.uint8)
    return MapResult(raw=np.zeros(raw_shape, np.float32), layer="conv", class_index=class_index,
                     class_name="abc"[class_index], score=float(prediction.probabilities[class_index]),
                     prediction=prediction, display=display)


# -- requests ---------------------------------------------------------------------------------
def test_request_ids_are_unique_and_increasing():
    requests = [Explain("k", None, None), LoadModel("demo"), Explain("k", None, 1)]
    ids = [r.id for r in requests]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert requests[0].supersedable and requests[0].method == "gradcam"


def test_expand_sources_keeps_every_good_input_in_order(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    inside = [write_png(folder / "b.png"), write_png(folder / "a.png")]
    (folder / "notes.txt").write_text("not a picture")
    empty = tmp_path / "empty"
    empty.mkdir()
    single = write_png(tmp_path / "single.png")
    missing = tmp_path / "gone.png"
    encoded = b"\x89PNG fake bytes"  # passed through undecoded: decoding is the next stage's job
    inputs, problems = expand_sources([str(single), str(missing), bytes(encoded), str(folder), str(empty),
                                       ("pasted.png", bytearray(b"xyz"))], find_images)
    assert [Path(p).name if not isinstance(p, tuple) else p for p in inputs] == [
        "single.png", ("clipboard", encoded), *sorted(p.name for p in inside), ("pasted.png", b"xyz")]
    assert [name for name, _message in problems] == ["gone.png", "empty"]
    assert "no images" in problems[1][1]
    assert all(isinstance(message, str) and message for _name, message in problems)


def test_expand_sources_with_nothing_usable(tmp_path):
    inputs, problems = expand_sources([str(tmp_path / "nope.png")], find_images)
    assert inputs == [] and len(problems) == 1 and problems[0][0] == "nope.png"


def test_precompute_skips_cached_maps_and_ends_with_none():
    cached = {map_key("img1", 3, "conv", 0, "gradcam"), map_key("img1", 3, "conv", 2, "other"),
              map_key("img1", 2, "conv", 1, "gradcam")}
    plan = Precompute("img1", 3, "conv", [0, 1, 2, 0])
    # 0 is cached; 1 only for another generation, 2 only for another method: both still wanted.
    assert plan.next_class(cached) == 1
    assert plan.next_class(cached) == 2
    assert plan.next_class(cached) is None  # the trailing 0 is cached
    assert plan.class_indices == [] and plan.next_class(cached) is None


def test_precompute_reads_a_map_cache_without_refreshing_it():
    cache = MapCache(2, 10**9)
    cache.put(map_key("img1", 1, "conv", 0, "gradcam"), _result())
    cache.put(map_key("img1", 1, "conv", 1, "gradcam"), _result(class_index=1))
    plan = Precompute("img1", 1, "conv", [0, 1, 2])
    assert plan.next_class(cache) == 2
    # Asking is not using: class 0 is still the least recently used and goes first.
    cache.put(map_key("img1", 1, "conv", 2, "gradcam"), _result(class_index=2))
    assert cache.keys() == [map_key("img1", 1, "conv", 1, "gradcam"), map_key("img1", 1, "conv", 2, "gradcam")]


# -- the map cache ----------------------------------------------------------------------------
def test_map_key_normalises_numbers():
    assert map_key("k", np.int64(2), "conv", np.int32(1), "gradcam") == ("k", 2, "conv", 1, "gradcam", "class")
    assert map_key("k", 2, "conv", 1, "gradcam", np.int64(3)) == ("k", 2, "conv", 1, "gradcam", ("versus", 3))


def test_map_key_tells_scores_apart():
    # The same class, layer and method explaining another score is another map.
    keys = {map_key("k", 1, "conv", 1, "gradcam"), map_key("k", 1, "conv", 1, "gradcam", 2),
            map_key("k", 1, "conv", 1, "gradcam", 3), map_key("k", 1, "conv", 1, "gradcam", counterfactual=True)}
    assert len(keys) == 4


def test_precompute_with_a_versus_class_skips_that_class_and_keys_by_score():
    cached = {map_key("img1", 1, "conv", 2, "gradcam")}  # the class score's map: not the one wanted
    plan = Precompute("img1", 1, "conv", [0, 1, 2], versus=0)
    assert plan.next_class(cached) == 1  # 0 versus 0 is no question
    assert plan.next_class(cached) == 2
    assert plan.spec(2).key(1) == map_key("img1", 1, "conv", 2, "gradcam", 0)


def test_result_bytes_counts_raw_and_display():
    assert result_bytes(_result((7, 9))) == 7 * 9 * 4
    assert result_bytes(_result((7, 9), (30, 40))) == 7 * 9 * 4 + 30 * 40


def test_lru_by_entries():
    cache = MapCache(2, 10**9)
    a, b, c = _result(), _result(class_index=1), _result(class_index=2)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now a is the most recently used
    cache.put("c", c)
    assert cache.keys() == ["a", "c"] and "b" not in cache and cache.get("b") is None
    assert len(cache) == 2


def test_lru_by_bytes():
    entry = 8 * 8 * 4 + 16 * 16  # raw float32 8×8 + display uint8 16×16 = 512 bytes
    cache = MapCache(100, 3 * entry)
    for name in "abc":
        cache.put(name, _result((8, 8), (16, 16)))
    assert cache.nbytes() == 3 * entry and cache.keys() == ["a", "b", "c"]
    cache.get("a")
    cache.put("d", _result((8, 8), (16, 16)))
    assert cache.keys() == ["c", "a", "d"] and cache.nbytes() == 3 * entry
    big = _result((8, 8), (16, 32))  # 256 + 512 = 768 bytes: 3 × 512 + 768 > 1536, and 2 × 512 + 768 too
    cache.put("e", big)
    assert cache.keys() == ["d", "e"] and cache.nbytes() == entry + 8 * 8 * 4 + 16 * 32


def test_replacing_a_key_counts_its_bytes_once():
    cache = MapCache(10, 10**9)
    cache.put("a", _result((8, 8)))
    cache.put("a", _result((2, 2), (3, 3)))
    assert len(cache) == 1 and cache.nbytes() == 2 * 2 * 4 + 9


def test_a_result_larger_than_the_bound_is_not_kept():
    cache = MapCache(10, 100)
    cache.put("small", _result((2, 2)))
    cache.put("huge", _result((20, 20)))
    assert len(cache) == 0 and cache.nbytes() == 0


def test_zero_entries_turns_caching_off_and_clear_forgets():
    off = MapCache(0, 10**9)
    off.put("a", _result())
    assert len(off) == 0 and off.get("a") is None
    cache = MapCache(4, 10**9)
    cache.put("a", _result())
    cache.clear()
    assert len(cache) == 0 and cache.nbytes() == 0 and cache.keys() == []


def test_keys_is_a_snapshot():
    cache = MapCache(4, 10**9)
    cache.put("a", _result())
    keys = cache.keys()
    keys.append("b")
    assert cache.keys() == ["a"]


# -- what mapReady carries --------------------------------------------------------------------
def test_map_result_fills_in_the_workers_fields():
    engine_result = _result((4, 4))
    display = np.full((10, 12), 7, np.uint8)
    result = map_result(engine_result, image_key="img5", generation=2, display=display, flat=True, seconds=0.25)
    assert (result.image_key, result.generation, result.flat, result.seconds, result.cached) == ("img5", 2, True,
                                                                                               0.25, False)
    assert result.display is display and result.raw is engine_result.raw
    assert result.prediction is engine_result.prediction and result.class_name == "a"
    assert engine_result.display is None and engine_result.image_key is None  # the engine's own is left alone


def test_versions_from_the_workers_imports():
    from types import SimpleNamespace

    from gradcam_desktop.session.results import versions

    def broken():
        raise OSError("registry unreadable")

    out = versions({"tf": SimpleNamespace(__version__="2.99"), "zoo": SimpleNamespace(zoo_names=broken)},
                   "TensorFlow could not be started")
    assert out["tensorflow"] == "2.99" and "keras" not in out and out["zoo_names"] == []
    assert out["error"] == "TensorFlow could not be started" and out["app"] and out["python"]
    out = versions({"zoo": SimpleNamespace(zoo_names=lambda: ("A", "B"))}, None)
    assert out["zoo_names"] == ["A", "B"] and "error" not in out
