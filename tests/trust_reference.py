"""Hand-written references for issue 8's trust figures, shared by tests/core/test_trust*.py.

Each is written from the issue's text in float64 (or exact integer logic), independently of
gradcam_desktop.core.trust.
"""

from __future__ import annotations

import math

import numpy as np

from reference import U32


def order_by_hand(saliency: np.ndarray) -> list[int]:
    """Pixels by S descending, ties by row-major index: Python's sort on the key (−S, index)."""
    flat = [float(v) for v in np.asarray(saliency, np.float64).ravel()]
    return sorted(range(len(flat)), key=lambda j: (-flat[j], j))


def first_pixels(order: list[int], count: int, height: int, width: int) -> np.ndarray:
    """Boolean (H, W): the first ``count`` pixels of ``order`` (all of them once count ≥ H·W)."""
    chosen = np.zeros(height * width, bool)
    chosen[order[:count]] = True
    return chosen.reshape(height, width)


def gaussian_blur_by_hand(picture: np.ndarray, size: int = 11, sigma: float = 5.0) -> np.ndarray:
    """OpenCV's Gaussian (weights ∝ exp(−x²/2σ²), x = −5…5, summing to 1), separable, in float64,
    with OpenCV's default border BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba = NumPy's "reflect")."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-x * x / (2 * sigma * sigma))
    kernel /= kernel.sum()
    half = size // 2
    padded = np.pad(np.asarray(picture, np.float64), ((half, half), (half, half), (0, 0)), mode="reflect")
    height, width = picture.shape[:2]
    rows = sum(kernel[j] * padded[:, j:j + width] for j in range(size))
    return sum(kernel[i] * rows[i:i + height] for i in range(size))


def bilinear_by_hand(raw: np.ndarray, height: int, width: int) -> np.ndarray:
    """INTER_LINEAR: pixel centres aligned (src = (dst + ½)·scale − ½), clamped at the edges."""
    raw = np.asarray(raw, np.float64)

    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        low = np.minimum(np.floor(src).astype(int), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, src - low

    y0, y1, fy = axis(height, raw.shape[0])
    x0, x1, fx = axis(width, raw.shape[1])
    top = raw[y0][:, x0] * (1 - fx) + raw[y0][:, x1] * fx
    bottom = raw[y1][:, x0] * (1 - fx) + raw[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def draws_match(original: np.ndarray, drawn: np.ndarray, z: float = 6.0, x: float = 20.0) -> list[str]:
    """Problems if ``drawn`` does not look like n draws from N(mean, std) of ``original``.

    Mean of n normal draws ~ N(μ, σ²/n): |m − μ| ≤ zσ/√n fails with probability 2Φ(−6) ≈ 2e-9.
    Variance (ddof 0): n s²/σ² ~ χ²_{n−1}; Laurent & Massart (2000): with D = n − 1,
    P(χ² ≥ D + 2√(Dx) + 2x) ≤ e^{−x} and P(χ² ≤ D − 2√(Dx)) ≤ e^{−x}, e^{−20} ≈ 2e-9.
    """
    values = np.asarray(original, np.float64).ravel()
    new = np.asarray(drawn, np.float64).ravel()
    n, mu, sigma = values.size, values.mean(), values.std()
    if sigma == 0:
        return [] if np.all(new == mu) else ["a constant tensor was not redrawn as that constant"]
    problems = []
    slack = 4 * U32 * (abs(mu) + sigma)  # the draws are stored in float32
    if abs(new.mean() - mu) > z * sigma / math.sqrt(n) + slack:
        problems.append(f"mean {new.mean():.4g} vs {mu:.4g} (bound {z * sigma / math.sqrt(n):.3g})")
    d = n - 1
    low, high = sigma**2 * (d - 2 * math.sqrt(d * x)) / n, sigma**2 * (d + 2 * math.sqrt(d * x) + 2 * x) / n
    if not low - slack**2 <= new.var() <= high + slack**2:
        problems.append(f"variance {new.var():.4g} outside [{low:.4g}, {high:.4g}]")
    return problems
