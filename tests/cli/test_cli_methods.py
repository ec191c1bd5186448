"""Issue 7 on the command line: --method, --versus, --counterfactual, --max-channels, fused layers,
`gradcam methods`, and `gradcam batch`'s batched maps.

What is checked here is the plumbing: each option reaches the engine and the files hold its map,
batches equal single maps, wrong combinations are one line. The methods' own numbers are the
engine's tests (tests/core). Maps are compared with tolerances derived below, never tuned.

The model is the textbook CAM head (convs → GAP → Dense). At ``backbone/last_conv`` (a ReLU
conv feeding global average pooling) two facts make every gradient method a weighted sum of
channels with hand-computable weights: A ≥ 0, and the gradient g = v·W/(h·w) is the same at every
position (v: the score vector: one-hot, a difference of two, or minus one-hot). Then

    gradcam, hirescam:        ReLU(Σ_k g_k A_k)             layercam, elementwise:  ReLU(Σ_k ReLU(g_k) A_k)
    xgradcam:                 ReLU(Σ_k g_k S_k/(S_k+ε) A_k) (S_k = Σ_ij A_k)
    gradcam++:                ReLU(Σ_k w_k A_k), w_k = hw · ReLU(g_k) g_k² / (2g_k² + S_k g_k³ + 1e-6)

Bound. Two float32 evaluations of the model (the CLI's engine and the test's, or a batch of 16
and a batch of 1, where kernels may sum in another order) give activations that differ by
|ΔA| ≤ ρ_A (|A| + s_A), ρ_A = ``reference.discrepancy`` (both passes' error, floored by the
layer's mean |A| = s_A for values that cancelled), and gradients that differ by |Δg| ≤ ρ_g |g|:
g is W's column(s) divided by h·w, one rounding each, two with --versus, on each side. With
map = ReLU(Σ_k w_k A_k) and ReLU 1-Lipschitz,

    |Δmap| ≤ Σ_k |w_k| |ΔA_k| + |Δw_k| A_k  (+ the float32 sum over K channels and the final cast)

where |Δw_k| ≤ c_g ρ_g |w_k| (c_g = 1; 3 for Grad-CAM++, whose w_k ∝ g³/(2g² + S g³)) plus the
weights' sensitivity to S_k (XGrad-CAM, Grad-CAM++), with |ΔS_k| ≤ ρ_A (S_k + hw s_A).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop import cli, commands
from gradcam_desktop.cli import main
from gradcam_desktop.core import cams
from gradcam_desktop.core.batch import explain_batch
from gradcam_desktop.core.errors import MethodError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model

from model_factory import gap_dense_model
from reference import U32, U64, discrepancy, exact_gradient, gamma

LAYER = "backbone/last_conv"
CLASSES = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 3-class model with a labels sidecar, five pictures of different sizes, and the test's engine."""
    folder = tmp_path_factory.mktemp("methods")
    model_path = folder / "shapes.keras"
    gap_dense_model((48, 64, 3), classes=3, seed=31).save(model_path)
    (folder / "shapes.labels.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(7)
    pictures = []
    for i, size in enumerate(((90, 120), (64, 64), (200, 150), (48, 64), (71, 33))):
        path = folder / "in" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
        pictures.append(path)
    engine = GradCam(load_model(model_path))
    return {"model": model_path, "pictures": pictures, "engine": engine, "rho_a": discrepancy(engine.model),
            # Each side rounds g once (twice with --versus: a difference of two columns, then / hw).
            "rho_g": 2 * exact_gradient()}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def recorded(monkeypatch):
    """The engine calls the CLI makes: (method name, keyword arguments, what it returned)."""
    calls: list[tuple[str, dict, object]] = []
    explain, explain_many = GradCam.explain, GradCam.explain_many

    def record_explain(engine, image, *args, **kwargs):
        result = explain(engine, image, *args, **kwargs)
        calls.append(("explain", kwargs, result))
        return result

    def record_many(engine, images, *args, **kwargs):
        results = explain_many(engine, images, *args, **kwargs)
        calls.append(("explain_many", {**kwargs, "images": len(images)}, results))
        return results

    monkeypatch.setattr(GradCam, "explain", record_explain)
    monkeypatch.setattr(GradCam, "explain_many", record_many)
    return calls


# -- the bound of the module docstring ------------------------------------------------------
def captured(engine: GradCam, picture: Path, class_index: int, versus: int | None = None, counterfactual=False):
    """A, g (float64, (h, w, K)) and the logits of the test's own capture of ``picture`` for that score."""
    vector, top = engine.score_vector(engine.target(class_index, versus, counterfactual))
    run_ = engine.capture(LAYER).run(engine.model_input(load_image(picture)), vector[None], np.array([top], np.float32))
    A, g = run_.activations[0].astype(np.float64), run_.gradients[0].astype(np.float64)
    # The premises of the closed forms above: the ReLU layer's A ≥ 0, GAP's gradient is constant.
    assert A.min() >= 0.0 and np.all(g == g[:1, :1]), "the closed forms need A ≥ 0 and a constant gradient"
    return A, g, run_.logits[0].astype(np.float64)


def closed_form(method: str, A: np.ndarray, g: np.ndarray, rho_a: float, rho_g: float):
    """(map, tolerance) of a gradient method at LAYER: the closed form and the bound on two evaluations."""
    height, width, channels = A.shape
    gk, S = g[0, 0], A.sum(axis=(0, 1))
    s_a = np.abs(A).mean()
    dS = rho_a * (S + height * width * s_a)
    sensitivity = np.zeros(channels)  # |Δw_k| from ΔS_k
    c_g = 1.0
    if method in ("gradcam", "hirescam"):
        w = gk
    elif method in ("layercam", "elementwise"):
        w = np.maximum(gk, 0.0)
    elif method == "xgradcam":
        w = gk * S / (S + cams.XGRADCAM_EPS)
        sensitivity = np.abs(gk) * cams.XGRADCAM_EPS * dS / (S + cams.XGRADCAM_EPS) ** 2
    elif method == "gradcam++":
        c_g = 3.0
        g2, g3 = gk * gk, gk * gk * gk
        denominator = 2 * g2 + S * g3 + cams.GRADCAM_PP_EPS
        w = np.where(gk > 0, height * width * gk * g2 / denominator, 0.0)
        sensitivity = np.abs(w) * np.abs(g3) / denominator * dS
    else:
        raise AssertionError(method)
    weights = np.abs(w)
    terms = (A + s_a) @ weights
    tolerance = (rho_a * terms + c_g * rho_g * (A @ weights) + A @ sensitivity
                 + (gamma(channels) + gamma(channels, U64) + 2 * U32) * terms)
    return np.maximum(A @ w, 0.0), tolerance


def eigen_form(A: np.ndarray, rho_a: float):
    """(map, tolerance) of Eigen-CAM from A, for two evaluations whose A differ by ρ_A (|A| + s_A).

    C = A − column means, map = ReLU(±C v), v its first right singular vector. The perturbation E
    of C has |E_ij| ≤ ρ_A (|A_ij| + s_A) + ρ_A (mean_i |A_ij| + s_A) and ‖E‖₂ ≤ ‖E‖_F = e. Wedin's
    theorem: sin∠(v, v') ≤ e / (σ₁ − σ₂ − e), so ‖v − v'‖ ≤ √2 sin∠ (sign aligned), and row i of
    the projection moves by ≤ ‖C_i‖ ‖v − v'‖ + ‖E_i‖.
    """
    height, width, channels = A.shape
    X = A.reshape(-1, channels)
    C = X - X.mean(axis=0)
    s_a = np.abs(X).mean()
    E = rho_a * (np.abs(X) + s_a) + rho_a * (np.abs(X).mean(axis=0) + s_a)
    e = np.linalg.norm(E)
    _, sigma, vt = np.linalg.svd(C, full_matrices=False)
    assert sigma[0] - sigma[1] > 2 * e, "first singular value not separated: no bound on the vector"
    projection = C @ vt[0]
    tolerance = np.linalg.norm(E, axis=1) + np.linalg.norm(C, axis=1) * np.sqrt(2) * e / (sigma[0] - sigma[1] - e)
    tolerance += 2 * U32 * np.abs(projection) + gamma(channels * height * width, U64) * np.linalg.norm(C, axis=1)
    if abs(projection.min()) > abs(projection.max()):
        projection = -projection
    # The sign rule must decide the same way in both evaluations.
    assert abs(abs(projection.min()) - abs(projection.max())) > 2 * tolerance.max()
    return np.maximum(projection, 0.0).reshape(height, width), tolerance.reshape(height, width)


def assert_within(raw, expected, tolerance, what=""):
    raw = np.asarray(raw, np.float64)
    assert raw.shape == expected.shape, (raw.shape, expected.shape)
    assert (expected > 4 * tolerance).any(), f"{what}: the map is within rounding of 0 everywhere: a vacuous check"
    excess = np.abs(raw - expected) - tolerance
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, f"{what}: {raw[worst]} vs {expected[worst]} at {worst}, bound {tolerance[worst]:.3g}"


# -- gradcam methods ------------------------------------------------------------------------
def test_methods_lists_all_eight_with_their_sentence_and_marks(capsys):
    assert cli.METHOD_NAMES == tuple(cams.METHODS)  # the --help text lists the registry's names
    code, out, _ = run(capsys, "methods")
    assert code == 0
    lines = out.splitlines()
    for method in cams.METHODS.values():
        (at,) = [i for i, line in enumerate(lines) if line.split(" ", 1)[0] == method.name]
        assert method.title in lines[at] and lines[at + 1].strip() == method.summary
        assert ("not class-specific" in lines[at]) == (not method.class_specific)
        assert ("a forward pass per feature map" in lines[at]) == method.forward_passes
    code, out, _ = run(capsys, "methods", "--json")
    rows = json.loads(out)
    assert [row["name"] for row in rows] == list(cams.METHODS) and len(rows) == 8
    assert {row["name"] for row in rows if not row["class_specific"]} == {"eigencam"}
    assert {row["name"] for row in rows if row["forward_passes"]} == {"scorecam"}


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
    assert name == "explain" and kwargs["method"] == method and kwargs["counterfactual"] == counterfactual
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
    assert kwargs["method"] == "eigencam" and np.array_equal(np.load(npy), result.raw)
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

    monkeypatch.setattr(commands, "_step_progress", lambda label: (lambda done, total: steps.append((done, total)),
                                                                    Bar()))
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", picture, "--method", "scorecam",
                         "--max-channels", "4", "--class", "dog", "--heatmap", npy, "--json")
    assert code == 0, err
    assert json.loads(out)["method"] == "scorecam"
    ((_, kwargs, result),) = recorded
    assert kwargs["max_channels"] == 4 and kwargs["progress"] is not None
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

    monkeypatch.setattr(commands, "_step_progress", lambda label: (interrupt, None))
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
    (["--method", "gradcam+"], r"Unknown method 'gradcam\+'\. Choose one of: gradcam, gradcam\+\+, .*scorecam\."),
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


# -- gradcam batch --------------------------------------------------------------------------
def test_batch_maps_are_one_compiled_call_and_equal_single_maps(setup, capsys, tmp_path, recorded):
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--class", "dog", "--heatmaps", "--method", "layercam",
                       "--out-dir", out_dir, *setup["pictures"])
    assert code == 0, err
    # Five pictures of one model-input size: one batched call, no single ones.
    assert [(name, kwargs["images"]) for name, kwargs, _ in recorded] == [("explain_many", 5)]
    engine = setup["engine"]
    for picture in setup["pictures"]:
        single = engine.explain(load_image(picture), LAYER, 1, "layercam")
        A, g, _ = captured(engine, picture, 1)
        expected, tolerance = closed_form("layercam", A, g, setup["rho_a"], setup["rho_g"])
        batched = np.load(out_dir / f"{picture.stem}.npy")
        # Batch of 5 vs batch of 1: the same compiled function at another batch size may sum in
        # another order; both are evaluations of the model, within the bound of the closed form.
        assert_within(batched, expected, tolerance, f"{picture.name} batched")
        assert_within(single.raw, expected, tolerance, f"{picture.name} single")


def test_batch_gradcam_default_equals_single_explains(setup, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--class", "cat", "--heatmaps", "--out-dir", out_dir,
                       *setup["pictures"])
    assert code == 0, err
    engine = setup["engine"]
    for picture in setup["pictures"]:
        A, g, _ = captured(engine, picture, 0)
        expected, tolerance = closed_form("gradcam", A, g, setup["rho_a"], setup["rho_g"])
        single = engine.explain(load_image(picture), LAYER, 0)
        assert_within(np.load(out_dir / f"{picture.stem}.npy"), expected, tolerance, f"{picture.name} batched")
        assert_within(single.raw, expected, tolerance, f"{picture.name} single")


def test_results_csv_and_sidecars_record_method_and_score(setup, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--method", "gradcam++", "--class", "cat", "--versus",
                       "dog", "--out-dir", out_dir, *setup["pictures"][:3])
    assert code == 0, err
    assert "3 of 3 images explained with Grad-CAM++" in err
    with open(out_dir / "results.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert {"method", "score_kind", "versus_name", "explained_score"} <= set(reader.fieldnames)
    assert len(rows) == 3
    for row in rows:
        assert (row["method"], row["score_kind"], row["explained_name"], row["versus_name"]) == (
            "gradcam++", "versus", "cat", "dog")
        sidecar = json.loads((out_dir / f"{Path(row['image']).stem}.json").read_text())
        assert (sidecar["method"], sidecar["score_kind"], sidecar["versus_name"]) == ("gradcam++", "versus", "dog")
        # The table and the sidecar give the same explained score y_cat − y_dog.
        assert float(row["explained_score"]) == pytest.approx(sidecar["explained_score"], rel=1e-5)


def test_batch_scorecam_runs_per_picture_and_ctrl_c_keeps_the_table(setup, capsys, tmp_path, recorded, monkeypatch):
    seen: list[int] = []

    def masks(done, total):
        seen.append(done)
        if len([name for name, _, _ in recorded]) == 2:  # during the third picture
            raise KeyboardInterrupt

    monkeypatch.setattr(commands, "_batch_progress", lambda total, with_masks: (None, masks if with_masks else None))
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--method", "scorecam", "--max-channels", "4",
                       "--out-dir", out_dir, *setup["pictures"])
    assert code == 130 and seen
    assert [name for name, _, _ in recorded] == ["explain", "explain"]  # one picture at a time
    assert err.strip().splitlines()[-1] == "Interrupted after 2 of 5 images; results.csv lists them."
    with open(out_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(row["image"]).name for row in rows] == ["p0.png", "p1.png"]
    assert all(row["method"] == "scorecam" and not row["error"] for row in rows)


class FailingEngine:
    """A real engine whose batched call fails when a group holds ``bad``, and single calls on it too."""

    def __init__(self, engine: GradCam, bad: str):
        self.engine, self.bad, self.calls = engine, bad, []

    def explain_many(self, images, **kwargs):
        self.calls.append(len(images))
        if any(image.name == self.bad for image in images):
            raise RuntimeError("a kernel failed on one picture")
        return self.engine.explain_many(images, **kwargs)

    def explain(self, image, **kwargs):
        self.calls.append(1)
        if image.name == self.bad:
            raise MethodError("this picture cannot be explained")
        return self.engine.explain(image, **kwargs)


def test_a_failing_group_is_explained_one_by_one_and_only_the_bad_picture_fails(setup, tmp_path):
    pictures = setup["pictures"]
    engine = FailingEngine(setup["engine"], pictures[3].name)
    rows = list(explain_batch(engine, pictures, tmp_path, class_index=1, group_size=2))
    assert [Path(row.source).name for row in rows] == [p.name for p in pictures]
    assert [row.error for row in rows] == [None, None, None, "this picture cannot be explained", None]
    # Groups (p0 p1) (p2 p3) (p4): the second fails as a group, then runs one by one; p4 alone is a single call.
    assert engine.calls == [2, 2, 1, 1, 1]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["p0.png", "p1.png", "p2.png", "p4.png"]


def test_a_bug_is_not_swallowed_by_the_fallback(setup, tmp_path):
    class Broken(FailingEngine):
        def explain(self, image, **kwargs):
            raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        list(explain_batch(Broken(setup["engine"], setup["pictures"][0].name), setup["pictures"], tmp_path))


def test_without_write_ahead_a_step_is_one_group_and_a_stop_leaves_rows_for_every_file(setup, tmp_path, recorded):
    rows = explain_batch(setup["engine"], setup["pictures"], tmp_path, class_index=0, write_ahead=0, group_size=3)
    first = next(rows)
    # One compiled call for the first group of three, but only the first row's files exist yet.
    assert [(name, kwargs["images"]) for name, kwargs, _ in recorded] == [("explain_many", 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p0.json", "p0.png"] and first.written
    second = next(rows)
    rows.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p0.json", "p0.png", "p1.json", "p1.png"]
    assert second.written and len(recorded) == 1


def test_decode_errors_keep_their_place_in_a_group(setup, tmp_path):
    broken = tmp_path / "in" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(setup["pictures"][0].read_bytes()[:80])
    sources = [setup["pictures"][0], broken, setup["pictures"][1]]
    rows = list(explain_batch(setup["engine"], sources, tmp_path, class_index=2))
    assert [Path(row.source).name for row in rows] == ["p0.png", "broken.png", "p1.png"]
    assert [row.error is None for row in rows] == [True, False, True] and rows[1].result is None
    assert rows[0].written and rows[2].written and not (tmp_path / "broken.png").exists()
