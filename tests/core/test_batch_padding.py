"""Issue 21: a batch loop runs its groups at one batch size — equal groups, a short one padded — so
the compiled capture is traced once, and a padded row changes no picture's map."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core.batch import balanced_size, explain_batch
from gradcam_desktop.core.gradcam import GradCam

from model_factory import gap_dense_model, random_image, save_and_load

RHO = 1e-4  # as test_batch.py: two float32 evaluations of this 3-conv model at different batch sizes


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return save_and_load(gap_dense_model((32, 32, 3), classes=3, seed=5), tmp_path_factory.mktemp("padding"))


@pytest.mark.parametrize(("count", "most", "size"), [(81, 16, 14), (80, 16, 16), (5, 16, 5), (17, 16, 9),
                                                     (5, 2, 2), (1, 16, 1), (1009, 16, 16), (7, 1, 1)])
def test_balanced_size_makes_groups_as_equal_as_they_come(count, most, size):
    assert balanced_size(count, most) == size
    groups = -(-count // size)
    assert groups == -(-count // most)  # no more groups than the largest size would make
    assert groups * size - count < groups  # less than one padded row per group


def test_a_loop_with_a_short_last_group_traces_one_batch_size(loaded, tmp_path):
    rng = np.random.default_rng(7)
    paths = []
    for i in range(5):
        path = tmp_path / "in" / f"q{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    engine = GradCam(loaded)
    # Groups of up to 2: (q0 q1) (q2 q3) (q4) — the last one runs padded to 2, not as a batch of 1.
    (tmp_path / "out").mkdir()
    rows = list(explain_batch(engine, paths, tmp_path / "out", class_index=1, group_size=2))
    assert [row.error for row in rows] == [None] * 5 and all(row.written for row in rows)
    layer = engine.default_layer
    assert engine.trace_counts[layer] == 1 and engine.capture(layer).batch_sizes == {2}


def test_padded_rows_change_no_map_and_a_traced_size_is_not_padded(loaded):
    engine = GradCam(loaded, capture_cache_mb=0)
    pictures = [random_image(32, 32, seed=s) for s in (1, 2, 3)]
    alone = engine.explain_many(pictures, class_indices=[0, 1, None])  # batch of 3
    padded = engine.explain_many(pictures[:2], class_indices=[0, 1], batch_size=3)
    assert engine.capture(engine.default_layer).batch_sizes == {3}
    for single, batched in zip(alone, padded):
        assert batched.class_index == single.class_index
        scale = max(float(np.abs(single.raw).max()), 1e-30)
        assert np.all(np.abs(batched.raw - single.raw) <= RHO * scale)
    engine.explain_many(pictures[:2], class_indices=[0, 1])  # traces batch 2
    engine.explain_many(pictures[:2], class_indices=[0, 1], batch_size=3)  # 2 is traced now: not padded
    assert engine.capture(engine.default_layer).batch_sizes == {2, 3}
    traces = engine.trace_counts[engine.default_layer]
    engine.explain_many(pictures[:1], batch_size=3)  # one picture, batch 1 never traced: padded, no new trace
    assert engine.trace_counts[engine.default_layer] == traces
