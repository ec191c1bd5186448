"""core/batch.py's generator of rows and the engine's batched maps (explain_many)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core.batch import OutputStyle, explain_batch, write_csv
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image

from model_factory import gap_dense_model, random_image, save_and_load

EPS32 = float(np.finfo(np.float32).eps)
#: Relative rounding of activations and gradients between two float32 evaluations of this 3-conv
#: model (batched vs single): each conv sums ≤ 3·3·12 = 108 products, ≤ 108·ε32 ≈ 1.3e-5 of the
#: magnitudes per layer; three convs forward, three backward, the dense head: < 1e-4.
RHO = 1e-4


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("batch")
    return GradCam(save_and_load(gap_dense_model((32, 32, 3), classes=3, seed=5), folder))


@pytest.fixture()
def pictures(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i, size in enumerate(((40, 50), (32, 32), (64, 20), (33, 33), (50, 40))):
        path = tmp_path / "in" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(paths[0].read_bytes()[:60])
    return paths[:2] + [broken] + paths[2:]


def _bound(engine, image, layer, class_index):
    """Σ_k |α_k|·|A_k| per position: what rounding in A and α can move the map by (times RHO)."""
    captured = engine.capture(layer).run(engine.model_input(image), engine.head.class_weights(class_index)[None])
    alphas = np.abs(captured.gradients[0].astype(np.float64).mean(axis=(0, 1)))
    return RHO * np.abs(captured.activations[0]).astype(np.float64) @ alphas + 1e-30


def test_rows_come_in_order_with_files_sidecars_and_a_failed_row(engine, pictures, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    rows = list(explain_batch(engine, pictures, out, class_index=1, style=OutputStyle(heatmaps=True)))
    assert [row.source for row in rows] == [str(p) for p in pictures]
    assert [row.error is not None for row in rows] == [False, False, True, False, False, False]
    assert "broken.png" in rows[2].source and rows[2].result is None
    for row in rows:
        if row.error:
            continue
        stem = out / (pictures[rows.index(row)].stem)
        assert row.written == {"overlay": stem.with_suffix(".png"), "raw": stem.with_suffix(".npy"),
                               "sidecar": stem.with_suffix(".json")}
        picture = load_image(row.source)
        assert Image.open(stem.with_suffix(".png")).size == picture.rgb.shape[1::-1]  # picture's own size
        np.testing.assert_array_equal(np.load(stem.with_suffix(".npy")), row.result.raw)
        sidecar = json.loads(stem.with_suffix(".json").read_text())
        assert sidecar == {**sidecar, **row.result.record()}
        # The same map as one explain() call, up to float32 rounding of the terms.
        single = engine.explain(picture, None, 1)
        assert np.all(np.abs(single.raw - row.result.raw) <= _bound(engine, picture, single.layer, 1))
    write_csv(out / "results.csv", rows)
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [r["image"] for r in table] == [str(p) for p in pictures]
    assert table[2]["error"] and not table[0]["error"] and table[0]["explained_index"] == "1"
    assert {r["method"] for r in table if not r["error"]} == {"gradcam"}


def test_closing_the_generator_stops_early_and_leaves_no_partial_files(engine, pictures, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # Groups of two, two writes in flight: (p0 p1) and (broken p2) are explained before the first row.
    rows = explain_batch(engine, pictures, out, group_size=2, write_ahead=2)
    first = next(rows)
    rows.close()
    assert first.error is None
    written = {p.stem for p in out.glob("*.png")}
    # What was already queued may finish (each write is atomic); the third group never starts.
    assert {pictures[0].stem} <= written <= {pictures[0].stem, pictures[1].stem, pictures[3].stem}
    assert not [p for p in out.iterdir() if p.suffix not in (".png", ".json")]


def test_explain_many_batches_pictures_and_classes_like_single_calls(engine):
    a, b = random_image(32, 32, seed=11), random_image(40, 24, seed=12)
    pairs = [(a, 0), (a, 2), (b, None), (a, None)]
    many = engine.explain_many([p for p, _ in pairs], "backbone/conv2", [c for _, c in pairs])
    # Four maps of a fixed-size model in one batch: one trace, whatever the pictures and classes.
    assert engine.trace_counts["backbone/conv2"] == 1
    assert [r.class_index for r in many[:2]] == [0, 2]
    for (picture, asked), result in zip(pairs, many):
        single = engine.explain(picture, "backbone/conv2", asked)
        assert result.class_index == single.class_index  # None: each picture's own top class
        assert result.method == "gradcam" and result.layer == "backbone/conv2"
        np.testing.assert_allclose(result.prediction.probabilities, single.prediction.probabilities,
                                   rtol=RHO, atol=EPS32)
        bound = _bound(engine, picture, "backbone/conv2", single.class_index)
        assert np.all(np.abs(result.raw - single.raw) <= bound)
    # Single maps are batches of one: one more trace (concrete shapes per batch size), then none.
    assert engine.trace_counts["backbone/conv2"] == 2


def test_without_write_ahead_a_stop_leaves_only_the_rows_it_yielded(engine, pictures, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    rows = explain_batch(engine, pictures, out, write_ahead=0)
    yielded = [next(rows), next(rows)]
    rows.close()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{pictures[i].stem}{suffix}" for i in range(2) for suffix in (".json", ".png"))
    assert all(row.written for row in yielded)
