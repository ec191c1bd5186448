"""Class activation maps as pure reductions of a layer's activations A and gradients g.

Every gradient method is one small function ``(A, g) -> raw map`` for ONE image: A and g are
(h, w, K) float arrays, g = ∂y/∂A for the explained pre-softmax score y; the map is (h, w)
float32 at the layer's resolution, after the method's final ReLU, unscaled. They follow
pytorch-grad-cam's definitions, the library people compare against. Score-CAM needs the model
(extra forward passes): it lives in scorecam.py and is only named here. ``METHODS`` names them
all for the CLI and the window; adding a method is one function and one line in ``METHODS``.
NaN/inf (a broken model) become 0.

Weights are accumulated in float64: a sum over h·w positions in float32 would lose ~h·w ulps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import MethodError

__all__ = ["METHODS", "Method", "eigencam", "elementwise", "fuse", "gradcam", "gradcam_plus_plus", "hirescam",
           "layercam", "method", "method_names", "reduce", "xgradcam"]

#: pytorch-grad-cam's epsilons (Grad-CAM++'s denominator, XGrad-CAM's and the scaling's divisions).
GRADCAM_PP_EPS = 1e-6
XGRADCAM_EPS = 1e-7
SCALE_EPS = 1e-7


def _finite_relu(cam: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # a broken model's overflow becomes 0 below
        cam = np.asarray(cam, dtype=np.float32)
    return np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0)


def _finite64(array: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(array, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _weighted(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ReLU(Σ_k w_k A_k) for per-channel weights w (K,)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite_relu(_finite64(activations) @ _finite64(weights))


def gradcam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017): α_k = mean_ij g_k, map = ReLU(Σ_k α_k A_k)."""
    with np.errstate(over="ignore", invalid="ignore"):
        alphas = gradients.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
        return _finite_relu(activations @ alphas)


def gradcam_plus_plus(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al., 2018), pytorch-grad-cam's closed form with exp(y):

    a_ijk = g² / (2g² + (Σ_ij A_k)·g³ + 1e-6), a = 0 where g = 0; w_k = Σ_ij ReLU(g)·a.
    """
    g = _finite64(gradients)
    a = _finite64(activations)
    g2 = g * g
    denominator = 2.0 * g2 + a.sum(axis=(0, 1)) * g2 * g + GRADCAM_PP_EPS
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        aij = np.where(g != 0.0, g2 / denominator, 0.0)
    weights = (np.maximum(g, 0.0) * _finite64(aij)).sum(axis=(0, 1))
    return _weighted(a, weights)


def hirescam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """HiResCAM (Draelos & Carin, 2020): ReLU(Σ_k g_k ⊙ A_k), the gradient kept per position."""
    return _finite_relu((_finite64(gradients) * _finite64(activations)).sum(axis=-1))


def elementwise(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM element-wise (pytorch-grad-cam's GradCAMElementWise): ReLU(Σ_k ReLU(g_k ⊙ A_k))."""
    return _finite_relu(np.maximum(_finite64(gradients) * _finite64(activations), 0.0).sum(axis=-1))


def xgradcam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """XGrad-CAM (Fu et al., 2020): w_k = Σ_ij g·A / (Σ_ij A_k + 1e-7); ReLU(Σ_k w_k A_k)."""
    a = _finite64(activations)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        weights = (_finite64(gradients) * a).sum(axis=(0, 1)) / (a.sum(axis=(0, 1)) + XGRADCAM_EPS)
    return _weighted(a, _finite64(weights))


def layercam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """LayerCAM (Jiang et al., 2021): ReLU(Σ_k ReLU(g_k) ⊙ A_k)."""
    return _finite_relu((np.maximum(_finite64(gradients), 0.0) * _finite64(activations)).sum(axis=-1))


def eigencam(activations: np.ndarray, gradients: np.ndarray | None = None) -> np.ndarray:
    """Eigen-CAM (Muhammad & Yeasin, 2020): A as (h·w) × K, each channel's mean subtracted, projected on
    the first right singular vector; flipped when |min| > |max| (an SVD's sign is arbitrary: the sign
    correction of Seg-Eigen-CAM makes the larger extreme positive); ReLU. Ignores the gradients: the
    map is the same for every class.
    """
    a = _finite64(activations)
    height, width, channels = a.shape
    centred = a.reshape(height * width, channels)
    centred = centred - centred.mean(axis=0)
    try:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
    except np.linalg.LinAlgError:
        return np.zeros((height, width), np.float32)
    projection = (centred @ vt[0]).reshape(height, width)
    if abs(projection.min()) > abs(projection.max()):
        projection = -projection
    return _finite_relu(projection)


def scale(cam: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """pytorch-grad-cam's ``scale_cam_image``: cam − min, / (max + 1e-7), resized to ``size`` (h, w)."""
    cam = np.asarray(cam, dtype=np.float32)
    cam = cam - cam.min()
    cam = cam / (SCALE_EPS + cam.max())
    if size is not None and cam.shape != tuple(size):
        cam = cv2.resize(cam, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return cam.astype(np.float32)


def fuse(maps: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Maps of several layers fused as pytorch-grad-cam does (LayerCAM's recipe for fine detail):
    each ReLU'd map scaled to [0, 1] at ``size`` (h, w), averaged, scaled again."""
    scaled = [scale(np.maximum(m, 0.0), size) for m in maps]
    return scale(np.maximum(np.mean(scaled, axis=0), 0.0))


@dataclass(frozen=True)
class Method:
    """A CAM method: its reduction (None: computed with the model, see scorecam.py) and what it is."""

    name: str
    title: str
    reduce: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    summary: str
    class_specific: bool = True
    uses_gradients: bool = True
    forward_passes: bool = False  # needs extra forward passes of the model (slow)


METHODS: dict[str, Method] = {
    m.name: m for m in (
        Method("gradcam", "Grad-CAM", gradcam,
               "Weighs each feature map by its average gradient: the original, broad and stable."),
        Method("gradcam++", "Grad-CAM++", gradcam_plus_plus,
               "Like Grad-CAM, but weighs the positive gradients by position: finds several objects of a class better."),
        Method("hirescam", "HiResCAM", hirescam,
               "Multiplies gradient and feature map at each position: shows exactly what raised the score."),
        Method("elementwise", "Grad-CAM element-wise", elementwise,
               "Like HiResCAM, but only the positive contributions of each feature map count."),
        Method("xgradcam", "XGrad-CAM", xgradcam,
               "Weighs feature maps by gradient times activation, normalised: a Grad-CAM with a sounder scale."),
        Method("layercam", "LayerCAM", layercam,
               "Keeps only positive gradients, per position: finer detail, good on earlier layers."),
        Method("eigencam", "Eigen-CAM", eigencam,
               "The main pattern of the feature maps, without gradients: the same map for every class.",
               class_specific=False, uses_gradients=False),
        Method("scorecam", "Score-CAM", None,
               "Masks the picture with each feature map and weighs it by how much the score stays: no gradients, slow.",
               uses_gradients=False, forward_passes=True),
    )
}


def method_names() -> list[str]:
    return list(METHODS)


def method(name: str) -> Method:
    """The method called ``name``; MethodError listing the known ones otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise MethodError(f"Unknown method '{name}'. Choose one of: {', '.join(METHODS)}.") from None


def reduce(name: str, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """The raw map of gradient method ``name`` for one image's (h, w, K) activations and gradients."""
    chosen = method(name)
    if chosen.reduce is None:
        raise MethodError(f"{chosen.title} needs the model's forward passes: use the engine (GradCam.explain).")
    return chosen.reduce(activations, gradients)
