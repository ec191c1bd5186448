"""Class activation maps as pure reductions of a layer's activations A and gradients g.

Every gradient method is one small function ``(A, g) -> raw map`` for ONE image: A and g are
(h, w, K) float arrays, g = ∂y/∂A for the explained pre-softmax score y; the map is (h, w)
float32 at the layer's resolution, after the method's final ReLU, unscaled. They follow
pytorch-grad-cam's definitions, the library people compare against. NaN/inf (a broken model) become 0.

``METHODS`` is the one registry of every method the CLI and the window offer, CAMs and the
others: Score-CAM (scorecam.py), the pixel-gradient methods (pixels.py) and the methods that need
only the model's answers (perturbation.py) are named here with what they need of the model
(a layer? gradients?), what they cost and which options they take; ``Method.family`` tells the
engine how to compute each.

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


#: How the engine computes a method's map (gradcam.py dispatches on it):
#: "cam"             a reduction of one layer's activations and gradients (or activations only: Eigen-CAM);
#: "scorecam"        a layer's channels as masks, one forward pass each (scorecam.py);
#: "gradient"        gradients of the score with respect to the input pixels (pixels.py);
#: "guided-gradcam"  guided backprop times the Grad-CAM map of a layer (pixels.py);
#: "perturbation"    the model's answers to altered copies of the picture (perturbation.py).
FAMILIES = ("cam", "scorecam", "gradient", "guided-gradcam", "perturbation")

#: ``MapResult.layer`` (and the cache key's layer) of a map made at the input's pixels, not at a layer.
INPUT_LAYER = "input pixels"

#: The options a method may take (the CLI's flags without "--", underscores for dashes).
OPTION_NAMES = ("max_channels", "window", "stride", "baseline", "steps", "samples", "seed")


@dataclass(frozen=True)
class Method:
    """A method: what it computes, what it needs of the model and what it costs.

    Requests, results and widgets carry these objects (``method(name)`` finds one by name); a
    method's name is what files, settings and ``--method`` store.
    """

    name: str
    title: str
    reduce: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    summary: str
    class_specific: bool = True
    family: str = "cam"
    uses_layer: bool = True
    uses_gradients: bool = True
    stepwise: bool = False  # many model passes: computed in steps, as a cancellable job
    cost: str = "one forward + backward pass"
    options: tuple[str, ...] = ()  # of OPTION_NAMES

    @property
    def forward_passes(self) -> bool:
        """Computed in steps (extra model passes): the older name of ``stepwise``."""
        return self.stepwise

    @property
    def pixel(self) -> bool:
        """The map is at the model's input resolution (not a layer's)."""
        return self.family in ("gradient", "guided-gradcam", "perturbation")

    @property
    def needs(self) -> str:
        """What the model must offer, in words: "a layer and gradients", "gradients", "only answers" …"""
        if self.uses_layer:
            return "a layer and gradients" if self.uses_gradients else "a layer"
        return "gradients" if self.uses_gradients else "only answers"

    def works_with(self, *, layers: bool, gradients: bool) -> bool:
        """Whether a model that shows (or hides) its layers and gradients can run this method."""
        return (layers or not self.uses_layer) and (gradients or not self.uses_gradients)

    def check_options(self, options: dict | None) -> dict:
        """The options given (None values dropped), refused with one line when this method takes none of them."""
        given = {k: v for k, v in (options or {}).items() if v is not None}
        for name in given:
            if name not in self.options:
                takers = [m.title for m in METHODS.values() if name in m.options]
                flag = "--" + name.replace("_", "-")
                raise MethodError(f"{flag} only applies to {' and '.join(takers) or 'no method'}, not to {self.title}.")
        return given


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
               class_specific=False, uses_gradients=False, cost="one forward pass"),
        Method("scorecam", "Score-CAM", None,
               "Masks the picture with each feature map and weighs it by how much the score stays: no gradients, slow.",
               family="scorecam", uses_gradients=False, stepwise=True,
               cost="a forward pass per feature map of the layer", options=("max_channels",)),
        Method("saliency", "Saliency", None,
               "How much each pixel's change moves the score (|gradient|): which pixels, not which region; noisy.",
               family="gradient", uses_layer=False),
        Method("integrated-gradients", "Integrated Gradients", None,
               "Gradients summed along the path from a black picture to this one: each pixel's share of the score.",
               family="gradient", uses_layer=False, stepwise=True,
               cost="50 forward + backward passes", options=("steps", "baseline")),
        Method("smoothgrad", "SmoothGrad", None,
               "The saliency of many noisy copies of the picture, averaged: less noise than plain saliency.",
               family="gradient", uses_layer=False, stepwise=True,
               cost="26 forward + backward passes", options=("samples", "seed")),
        Method("guided-backprop", "Guided Backprop", None,
               "Gradients passed back only through positive activations: sharp edges, but hardly class-specific.",
               family="gradient", uses_layer=False, cost="one forward + backward pass"),
        Method("guided-gradcam", "Guided Grad-CAM", None,
               "Guided backprop's pixels inside Grad-CAM's region: fine detail where the class is.",
               family="guided-gradcam", cost="two forward + backward passes"),
        Method("occlusion", "Occlusion", None,
               "Hides one square at a time and measures how much the score drops: needs only the model's answers.",
               family="perturbation", uses_layer=False, uses_gradients=False, stepwise=True,
               cost="a forward pass per window position (730 at 224² with the defaults)",
               options=("window", "stride", "baseline")),
        Method("rise", "RISE", None,
               "Thousands of random masks, each weighed by the score it leaves: needs only the model's answers.",
               family="perturbation", uses_layer=False, uses_gradients=False, stepwise=True,
               cost="4,000 forward passes", options=("samples", "seed")),
    )
}


def method_names() -> list[str]:
    return list(METHODS)


def method(name: str | Method) -> Method:
    """The method called ``name`` (a ``Method`` is returned as it is); MethodError listing the known ones otherwise."""
    if isinstance(name, Method):
        return name
    try:
        return METHODS[name]
    except KeyError:
        raise MethodError(f"Unknown method '{name}'. Choose one of: {', '.join(METHODS)}.") from None


def reduce(name: str | Method, activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """The raw map of gradient method ``name`` for one image's (h, w, K) activations and gradients."""
    chosen = method(name)
    if chosen.reduce is None:
        raise MethodError(f"{chosen.title} is not a reduction of a layer's activations: use the engine (GradCam.explain).")
    return chosen.reduce(activations, gradients)
