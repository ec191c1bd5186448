"""Issue 7 on the command line: --method, --versus, --counterfactual, --max-channels, fused layers,
`gradcam methods`, and one-line errors for combinations that make no sense.

What is checked is the plumbing: each option reaches the engine and the saved map is the engine's
(within the bound derived in tests/method_bounds.py). The methods' own numbers are the engine's
tests (tests/core).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gradcam_desktop import cli
from gradcam_desktop.commands import shared
from gradcam_desktop.core import cams
from gradcam_desktop.core.images import load_image

from method_bounds import (CLASSES, LAYER, assert_within, captured, closed_form, eigen_form, make_setup,
                           record_calls, run)
from reference import U32


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("methods"))


@pytest.fixture()
def recorded(monkeypatch):
    return record_calls(monkeypatch)


# -- gradcam methods ------------------------------------------------------------------------
def test_methods_lists_every_method_with_its_sentence_needs_and_cost(capsys):
    assert cli.METHOD_NAMES == tuple(cams.METHODS)  # the --help text lists the registry's names
    code, out, _ = run(capsys, "methods")
    assert code == 0
    lines = out.splitlines()
    for method in cams.METHODS.values():
        (at,) = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] == method.name]
        assert method.title in lines[at] and lines[at + 1].strip() == method.summary
        assert ("not class-specific" in lines[at]) == (not method.class_specific)
        assert f"needs {method.needs}" in lines[at] and method.cost in lines[at]
        assert ("options: " in lines[at + 2]) == bool(method.options)
    code, out, _ = run(capsys, "methods", "--json")
    rows = json.loads(out)
    assert [row["name"] for row in rows] == list(cams.METHODS) and len(rows) == 15
    assert {row["name"] for row in rows if not row["class_specific"]} == {"eigencam"}
    assert {row["name"] for row in rows if row["needs"] == "only answers"} == {"occlusion", "rise"}
    assert {row["name"] for row in rows if row["needs"] == "gradients"} == {
        "saliency", "integrated-gradients", "smoothgrad", "guided-backprop"}
    assert {row["name"] for row in rows if row["stepwise"]} == {
        "scorecam", "integrated-gradients", "smoothgrad", "occlusion", "rise"}


# -- each option reaches the map --------------------------------------------------------------
SCORES = [
    # (method, CLI score options, class, versus, counterfactual, what the text says)
    ("gradcam", ["--class", "cat"], 0, None, False, "Grad-CAM · 'cat'"),
    ("gradcam++", ["--class", "cat", "--versus", "dog"], 0, 1, False, "Grad-CAM++ · 'cat' rather than 'dog'"),
    ("hirescam", ["--class", "1", "--counterfactual"], 1, None, True, "HiResCAM · against 'dog'"),
    ("elementwise", ["--class", "bird", "--versus", "0"], 2, 0, False,
     "Grad-CAM element-wise · 'bird' rather than 'cat'"),
    ("xgradcam", ["--class", "bird"], 2, None, False, "XGrad-CAM · 'bird'"),
    ("layercam", ["--class", "cat", "--counterfactual"], 0, None, True, "LayerCAM · against 'cat'"),
    ("gradcam++", ["--class", "dog", "--counterfactual"], 1, None, True, "Grad-CAM++ · against 'dog'"),
]


@pytest.mark.parametrize("method,options,class_index,versus,counterfactual,text", SCORES,
                         ids=[f"{c[0]}-{'-'.join(c[1])}" for c in SCORES])
def test_method_and_score_reach_the_saved_map(setup, capsys, tmp_path, recorded, method, options, class_index,
                                              versus, counterfactual, text):
    picture, npy = setup["pictures"][0], tmp_path / "raw.npy"
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--method", method, *options,
                         "--heatmap", npy, "--json")
    assert code == 0, err
    record = json.loads(out)
    kind = "counterfactual" if counterfactual else "versus" if versus is not None else "class"
    assert (record["method"], record["score_kind"], record["class_index"]) == (method, kind, class_index)
    assert record["versus_name"] == (None if versus is None else CLASSES[versus]) and record["notes"] == []
    # The engine got the options, and the file holds what it returned.
    ((name, kwargs, result),) = recorded
    assert name == "explain" and kwargs["method"] is cams.method(method) and kwargs["counterfactual"] == counterfactual
    assert (kwargs["class_index"], kwargs["versus"]) == (class_index, versus)
    assert np.array_equal(np.load(npy), result.raw)
    # The same map as the engine's own explain(), and both as the closed form, within the bound.
    engine = setup["engine"]
    own = engine.explain(load_image(picture), LAYER, class_index, method, versus=versus, counterfactual=counterfactual)
    A, g, logits = captured(engine, picture, class_index, versus, counterfactual)
    expected, tolerance = closed_form(method, A, g, setup["rho_a"], setup["rho_g"])
    assert_within(np.load(npy), expected, tolerance, "CLI vs closed form")
    assert_within(own.raw, expected, tolerance, "engine vs closed form")
    # Two maps within the bound of one closed form are within twice the bound of each other.
    assert np.all(np.abs(np.load(npy).astype(np.float64) - own.raw) <= 2 * tolerance)
    # y = v·logits, |v| ≤ 1 per class and ≤ 2 classes: each logit within the pass error of the two evaluations.
    y_tolerance = 2 * (setup["rho_a"] + U32) * (np.abs(logits).max() + np.abs(logits).mean())
    assert abs(record["explained_score"] - own.target_score) <= y_tolerance
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--method", method, *options)
    assert code == 0 and out.startswith(text + " (class "), out


def test_eigencam_says_it_is_not_class_specific_and_saves_the_engines_map(setup, capsys, tmp_path, recorded):
    picture, npy = setup["pictures"][1], tmp_path / "raw.npy"
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--method", "eigencam",
                         "--class", "bird", "--counterfactual", "--heatmap", npy, "--json")
    assert code == 0, err
    notes = json.loads(out)["notes"]
    assert notes == ["Eigen-CAM is not class-specific: its map is the same for every class, so --class and "
                     "--counterfactual do not change it."]
    assert err.strip().splitlines() == [f"Note: {notes[0]}"]
    ((_, kwargs, result),) = recorded
    assert kwargs["method"] is cams.method("eigencam") and np.array_equal(np.load(npy), result.raw)
    engine = setup["engine"]
    A, _, _ = captured(engine, picture, 2)
    expected, tolerance = eigen_form(A, setup["rho_a"])
    assert_within(np.load(npy), expected, tolerance, "CLI vs Eigen-CAM of the test's A")
    own = engine.explain(load_image(picture), LAYER, 0, "eigencam")  # another class: the same map
    assert_within(own.raw, expected, tolerance, "engine vs Eigen-CAM of the test's A")
    # Text: the method's title says it, and the note is one line on stderr; no note without class options.
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--method", "eigencam", "-c", "0")
    assert out.startswith("Eigen-CAM (not class-specific) · 'cat'") and err.count("not class-specific") == 1
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--method", "eigencam")
    assert code == 0 and "Note" not in err


def _relative_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


def test_scorecam_max_channels_and_its_progress_reach_the_engine(setup, capsys, tmp_path, recorded, monkeypatch):
    picture, npy = setup["pictures"][2], tmp_path / "raw.npy"
    steps: list[tuple[int, int]] = []

    class Bar:
        stopped = False

        def stop(self):
            Bar.stopped = True

    monkeypatch.setattr(shared, "step_progress", lambda label: (lambda done, total: steps.append((done, total)),
                                                                    Bar()))
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--method", "scorecam",
                         "--max-channels", "4", "--class", "dog", "--heatmap", npy, "--json")
    assert code == 0, err
    assert json.loads(out)["method"] == "scorecam"
    ((_, kwargs, result),) = recorded
    assert kwargs["method_options"] == {"max_channels": 4} and kwargs["progress"] is not None
    assert np.array_equal(np.load(npy), result.raw)
    # The engine's (done, total) reached the bar, which was taken down afterwards.
    assert steps and steps[-1][0] <= steps[-1][1] and [d for d, _ in steps] == sorted(d for d, _ in steps)
    assert Bar.stopped
    # Of the engine's maps with 4, 8 and all 16 channels, the saved one is the map with 4: the
    # options reached the computation (not a bound: which of three different maps it is).
    engine, image = setup["engine"], load_image(picture)
    candidates = {n: engine.explain(image, LAYER, 1, "scorecam", max_channels=n).raw for n in (4, 8, None)}
    distances = {n: _relative_distance(np.load(npy), raw) for n, raw in candidates.items()}
    assert min(distances, key=distances.get) == 4, distances
    assert min(_relative_distance(candidates[4], candidates[n]) for n in (8, None)) > 0.05  # they do differ


def test_ctrl_c_during_scorecam_stops_with_one_line_and_writes_nothing(setup, capsys, tmp_path, monkeypatch):
    def interrupt(done, total):
        raise KeyboardInterrupt

    monkeypatch.setattr(shared, "step_progress", lambda label: (interrupt, None))
    code, _, err = run(capsys, "explain", "-m", setup["model"], "-i", setup["pictures"][0], "--method", "scorecam",
                       "--heatmap", tmp_path / "raw.npy", "-o", tmp_path / "o.png")
    assert code == 130 and err.strip().splitlines() == ["Interrupted."]
    assert not list(tmp_path.iterdir())


def test_repeated_layers_give_a_fused_map_at_the_input_size(setup, capsys, tmp_path, recorded):
    picture, npy = setup["pictures"][0], tmp_path / "raw.npy"
    layers = ["backbone/conv2", LAYER]
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--layer", layers[0],
                         "--layer", layers[1], "--class", "dog", "--method", "layercam", "--heatmap", npy, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["layers"] == layers and record["layer"] == " + ".join(layers)
    assert record["heatmap_shape"] == [48, 64]  # the model's input size
    ((_, kwargs, result),) = recorded
    assert kwargs["layer"] == layers and np.array_equal(np.load(npy), result.raw)
    # Which of the engine's maps is it: the fusion of both layers, not either layer alone.
    engine, image = setup["engine"], load_image(picture)
    fused = engine.explain(image, layers, 1, "layercam").raw
    alone = [cams.fuse([engine.explain(image, name, 1, "layercam").raw], (48, 64)) for name in layers]
    distances = [_relative_distance(np.load(npy), m) for m in (fused, *alone)]
    assert int(np.argmin(distances)) == 0, distances
    assert min(_relative_distance(fused, m) for m in alone) > 0.05


# -- wrong combinations: one line, exit 1 ------------------------------------------------------
WRONG = [
    (["--class", "dog", "--versus", "dog"], r"'dog' cannot be compared with itself"),
    (["--class", "1", "--versus", "dog"], r"'dog' cannot be compared with itself"),
    (["--versus", "dog", "--counterfactual"], r"--versus and --counterfactual cannot be combined"),
    (["--max-channels", "8"], r"--max-channels only applies to Score-CAM"),
    (["--method", "scorecam", "--max-channels", "0"], r"--max-channels must be 1 or more"),
    (["--method", "gradcam+"], r"Unknown method 'gradcam\+'\. Choose one of: gradcam, gradcam\+\+, .*scorecam, .*, rise\."),
    (["--versus", "zebra"], r"No class named 'zebra'"),
]


@pytest.mark.parametrize("command", ["explain", "batch"])
@pytest.mark.parametrize("options,message", WRONG, ids=[" ".join(w[0]) for w in WRONG])
def test_wrong_combinations_are_one_line(setup, capsys, tmp_path, command, options, message):
    where = ["-i", setup["pictures"][0], "-o", tmp_path / "o.png"] if command == "explain" else [
        "--out-dir", tmp_path / "out", setup["pictures"][0]]
    code, out, err = run(capsys, command, "-m", setup["model"], *where, *options)
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in err, err
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "o.png").exists() and not list((tmp_path / "out").glob("*.png"))
