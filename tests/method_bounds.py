"""Shared by tests/cli/test_cli_methods.py and test_cli_batch_groups.py: a small model and pictures,
the engine calls the CLI makes, and the bound that CLI maps are held to (derived, never tuned).

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

from pathlib import Path

import numpy as np
from PIL import Image

from gradcam_desktop.cli import main
from gradcam_desktop.core import cams
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model

from model_factory import gap_dense_model
from reference import U32, U64, discrepancy, exact_gradient, gamma

LAYER = "backbone/last_conv"
CLASSES = ["cat", "dog", "bird"]


def make_setup(folder: Path) -> dict:
    """A 3-class model with a labels sidecar, five pictures of different sizes, and the test's engine."""
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
    """(exit code, stdout, stderr) of ``gradcam *argv`` run in this process."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def record_calls(monkeypatch) -> list:
    """The engine calls the CLI makes from now on: (method name, keyword arguments, what it returned)."""
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


def assert_within(raw, expected, tolerance, what: str = "") -> None:
    """|raw − expected| ≤ tolerance everywhere, on a map that is not within rounding of 0 everywhere."""
    raw = np.asarray(raw, np.float64)
    assert raw.shape == expected.shape, (raw.shape, expected.shape)
    assert (expected > 4 * tolerance).any(), f"{what}: the map is within rounding of 0 everywhere: a vacuous check"
    excess = np.abs(raw - expected) - tolerance
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 0, f"{what}: {raw[worst]} vs {expected[worst]} at {worst}, bound {tolerance[worst]:.3g}"
