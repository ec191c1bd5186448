"""Class activation maps as pure reductions of a layer's activations A and gradients g.

Every method is one small function ``(A, g) -> raw map`` for ONE image: A and g are (h, w, K)
float arrays, the map is (h, w) float32 at the layer's resolution, after the method's final
ReLU, unscaled. ``METHODS`` names them for the CLI and the window; adding a method is one
function here and one line in ``METHODS``. NaN/inf (a broken model) become 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import MethodError

__all__ = ["METHODS", "Method", "gradcam", "method", "method_names", "reduce"]


def _finite_relu(cam: np.ndarray) -> np.ndarray:
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.maximum(cam, 0.0)


def gradcam(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al., 2017): α_k = mean_ij g_k, map = ReLU(Σ_k α_k A_k)."""
    # The mean over h·w positions accumulates in float64: float32 would lose ~h·w ulps of it.
    alphas = gradients.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
    return _finite_relu(activations @ alphas)


@dataclass(frozen=True)
class Method:
    """A CAM method: its reduction and one plain sentence about it."""

    name: str
    reduce: Callable[[np.ndarray, np.ndarray], np.ndarray]
    summary: str
    class_specific: bool = True


METHODS: dict[str, Method] = {
    m.name: m for m in (
        Method("gradcam", gradcam, "Channels weighted by their mean gradient (the original Grad-CAM)."),
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
    """The raw map of method ``name`` for one image's (h, w, K) activations and gradients."""
    return method(name).reduce(activations, gradients)
