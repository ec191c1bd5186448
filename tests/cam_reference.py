"""Float64 references of the CAM methods of issue 7, each carrying the bound a float32 engine must meet.

Written from the issue's formulas (pytorch-grad-cam's definitions), never from core/cams.py.

Bound: running error analysis (Higham, *Accuracy and Stability*, §3.3). A ``Bounded`` holds the
exact float64 value v of a quantity and a bound e on |v̂ − v| where v̂ is what ANY float32
evaluation of the same formula may give: every float32 operation gives (a ∘ b)(1 + δ), |δ| ≤ u,
so for computed â, b̂ with |â − a| ≤ e_a, |b̂ − b| ≤ e_b

    a ± b   e = e_a + e_b + u(|a ± b| + e_a + e_b)
    a · b   e = |a| e_b + |b| e_a + e_a e_b + u(|a| + e_a)(|b| + e_b)
    a / b   e = (e_a + |a/b| e_b) / (|b| − e_b) + u(|a/b| + that)       (∞ when |b| ≤ e_b)
    Σ_n x   e = Σ e_i + γ_{n−1}(Σ|x_i| + Σ e_i)                        (any order, Higham §4.2)
    ReLU, min, max: 1-Lipschitz, e unchanged (max e for min/max).

A float64 or fused evaluation rounds less, so it meets the same bound. The bound assumes the
engine evaluates the issue's expression (any association of products and sums); an algebraic
rewrite (dividing numerator and denominator by g², say) could round differently.
"""

from __future__ import annotations

import numpy as np

from reference import U32, U64, _log_slack, gamma

#: pytorch-grad-cam's constants.
EPS_GRADCAM_PP = 1e-6
EPS_XGRADCAM = 1e-7
EPS_SCALE = 1e-7  # scale_cam_image: x − min, / (max + 1e-7)
EPS_SCORECAM = 1e-8  # Score-CAM masks: (U − min)/(max − min + 1e-8)
GRADIENT_METHODS = ("gradcam", "gradcam++", "hirescam", "elementwise", "xgradcam", "layercam")


class Bounded:
    """A float64 value and a bound on the error of its float32 evaluation (module docstring)."""

    def __init__(self, value, error=0.0):
        self.v = np.asarray(value, dtype=np.float64)
        self.e = np.broadcast_to(np.asarray(error, dtype=np.float64), self.v.shape).copy()

    @classmethod
    def const(cls, c: float) -> Bounded:
        """A constant of the formula: float32 represents it within u|c|."""
        return cls(c, U32 * abs(c))

    def _rounded(self, value, error) -> Bounded:
        return Bounded(value, error + U32 * (np.abs(value) + error))

    def __add__(self, other: Bounded) -> Bounded:
        return self._rounded(self.v + other.v, self.e + other.e)

    def __sub__(self, other: Bounded) -> Bounded:
        return self._rounded(self.v - other.v, self.e + other.e)

    def __mul__(self, other: Bounded) -> Bounded:
        a, b = np.abs(self.v), np.abs(other.v)
        value = self.v * other.v
        error = a * other.e + b * self.e + self.e * other.e
        # u(|a| + e_a)(|b| + e_b) ≥ u|computed product|.
        return Bounded(value, error + U32 * (a + self.e) * (b + other.e))

    def __truediv__(self, other: Bounded) -> Bounded:
        b = np.abs(other.v)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = self.v / other.v
            error = np.where(b > other.e, (self.e + np.abs(value) * other.e) / (b - other.e), np.inf)
        return self._rounded(value, error)

    def sum(self, axis) -> Bounded:
        axes = axis if isinstance(axis, tuple) else (axis,)
        n = int(np.prod([self.v.shape[a] for a in axes]))
        errors = self.e.sum(axis=axis)
        return Bounded(self.v.sum(axis=axis), errors + gamma(max(n - 1, 0)) * (np.abs(self.v).sum(axis=axis) + errors))

    def mean(self, axis) -> Bounded:
        total = self.sum(axis)
        n = self.v.size // total.v.size
        return Bounded(total.v / n, total.e / n + U32 * (np.abs(total.v) + total.e) / n)

    def relu(self) -> Bounded:
        return Bounded(np.maximum(self.v, 0.0), self.e)

    def min(self) -> Bounded:
        """min x̂ lies in [min(x − e), min(x + e)]."""
        low, high, value = (self.v - self.e).min(), (self.v + self.e).min(), self.v.min()
        return Bounded(value, max(value - low, high - value))

    def max(self) -> Bounded:
        low, high, value = (self.v - self.e).max(), (self.v + self.e).max(), self.v.max()
        return Bounded(value, max(value - low, high - value))

    def where(self, keep, other: float = 0.0) -> Bounded:
        """``self`` where ``keep``, an exact ``other`` elsewhere (a mask on exact inputs)."""
        return Bounded(np.where(keep, self.v, other), np.where(keep, self.e, 0.0))

    def cast(self) -> Bounded:
        """The final float32 result of a computation that may have been done in float64."""
        return self._rounded(self.v, self.e)

    def __getitem__(self, index) -> Bounded:
        return Bounded(self.v[index], self.e[index])


def stack(items: list[Bounded], axis=0) -> Bounded:
    return Bounded(np.stack([i.v for i in items], axis), np.stack([i.e for i in items], axis))


# -- the six gradient methods -----------------------------------------------------------------
def weighted_sum(A: Bounded, weights: Bounded) -> Bounded:
    """ReLU(Σ_k w_k A_k) as a float32 map."""
    return (A * weights).sum(-1).relu().cast()


def gradient_map(name: str, A: Bounded, g: Bounded, nonnegative: bool = False) -> Bounded:
    """The raw map of a gradient method for one image's (h, w, K) A and g (issue 7's formulas).

    ``nonnegative``: the engine's A is ≥ 0 too (a ReLU's output), which bounds XGrad-CAM's
    weights where the division's bound does not (a channel that is 0 nearly everywhere).
    """
    if name == "gradcam":
        return weighted_sum(A, g.mean((0, 1)))
    if name == "gradcam++":
        g2 = g * g
        g3 = g2 * g
        sums = A.sum((0, 1))
        denominator = Bounded(2.0) * g2 + sums * g3 + Bounded.const(EPS_GRADCAM_PP)
        # ReLU(g)·a: where g ≤ 0 the term is 0 whatever a is (a = 0 where g = 0 by the issue's
        # rule), so only positive gradients need a, and only there must the denominator be away
        # from 0 for the bound to be finite.
        positive = g.v > 0
        safe = Bounded(np.where(positive, denominator.v, 1.0), np.where(positive, denominator.e, 0.0))
        alpha = (g2 / safe).where(positive)
        return weighted_sum(A, (g.relu() * alpha).sum((0, 1)))
    if name == "hirescam":
        return (g * A).sum(-1).relu().cast()
    if name == "elementwise":
        return (g * A).relu().sum(-1).relu().cast()
    if name == "xgradcam":
        weights = (g * A).sum((0, 1)) / (A.sum((0, 1)) + Bounded.const(EPS_XGRADCAM))
        if nonnegative:
            # A ≥ 0: |Σ gA| ≤ max|g|·Σ A, so both ŵ and w lie in [−G, G], G = max(|g| + e_g).
            assert (A.v >= 0).all()
            span = (np.abs(g.v) + g.e).max(axis=(0, 1))
            weights = Bounded(weights.v, np.minimum(weights.e, np.abs(weights.v) + span))
        return weighted_sum(A, weights)
    if name == "layercam":
        return (g.relu() * A).sum(-1).relu().cast()
    raise ValueError(name)


def inputs(A, g, rho_a: float = 0.0, rho_g: float = 0.0) -> tuple[Bounded, Bounded]:
    """A and g as given to the engine's reduction: float32 copies of values that are within
    ρ(|x| + mean|x|) of ours (tests/reference.py's pass-error model), then cast to float32."""
    A, g = np.asarray(A, np.float64), np.asarray(g, np.float64)

    def bounded(x, rho):
        before = rho * (np.abs(x) + np.abs(x).mean())
        return Bounded(x, before + U32 * (np.abs(x) + before)) if rho else Bounded(x)

    return bounded(A, rho_a), bounded(g, rho_g)


# -- Eigen-CAM ---------------------------------------------------------------------------------
#: Backward error of a Householder-bidiagonalisation SVD of an m×n matrix: ‖E‖_F ≤ γ̃_{mn+n²}‖X‖_F
#: with γ̃_k = cku/(1 − cku), "c a small integer constant" (Higham, Thms 19.4 and 19.10 for the
#: Householder sweeps; the bidiagonal QR iteration adds O(n²u)). We take c = 4.
SVD_C = 4


def eigen_projection(A) -> np.ndarray:
    """Channel-centred (H·W)×K matrix projected on its first right singular vector, sign as SVD gives it."""
    h, w, k = np.shape(A)
    X = np.asarray(A, np.float64).reshape(h * w, k)
    X = X - X.mean(axis=0)
    return (X @ np.linalg.svd(X, full_matrices=False)[2][0]).reshape(h, w)


def sign_corrected(projection: np.ndarray) -> np.ndarray:
    """The issue's rule: flip when |min| > |max|, then ReLU."""
    p = -projection if abs(projection.min()) > abs(projection.max()) else projection
    return np.maximum(p, 0.0)


def eigencam(A, error_a=0.0) -> Bounded:
    """Eigen-CAM of (h, w, K) A in float64 and the bound on a float32 engine's map.

    Perturbation: the engine centres its A (error ≤ E0 elementwise, A's own error plus the mean's
    rounding), then its SVD is exact for X + E1 with ‖E1‖ ≤ γ_{c(mn+n²)}‖X‖_F. Wedin's sin Θ
    theorem: sin θ(v̂, ±v) ≤ ‖E‖₂ / (σ₁ − σ₂ − ‖E‖₂), and ‖v̂ − v‖ ≤ √2 sin θ for θ ≤ π/2. The
    projection x_i·v̂ then errs by ‖E0_i‖ + ‖x_i‖(√2 sin θ + γ_{c(mn+n²)}) (v̂ orthonormal only to
    that accuracy) + γ_K Σ_k|x_ik v_k| (the dot product). The sign rule is decided by which of
    |min|, |max| is larger: the caller must check they differ by more than the error
    (``sign_decided``). ReLU is 1-Lipschitz.
    """
    A = np.asarray(A, np.float64)
    h, w, k = A.shape
    m = h * w
    X = A.reshape(m, k)
    Xc = X - X.mean(axis=0)
    ea = np.broadcast_to(np.asarray(error_a, np.float64), A.shape).reshape(m, k)
    mean_error = ea.mean(axis=0) + gamma(m + 1) * np.abs(X).mean(axis=0)
    e0 = ea + mean_error + U32 * (np.abs(Xc) + ea + mean_error)
    _, s, vt = np.linalg.svd(Xc, full_matrices=False)
    svd = gamma(SVD_C * (m * k + k * k))
    norm_e = np.sqrt((e0 ** 2).sum()) + svd * np.linalg.norm(Xc)
    gap = s[0] - (s[1] if k > 1 else 0.0) - norm_e
    sin = norm_e / gap if gap > 0 else np.inf
    rows = np.linalg.norm(Xc, axis=1)
    projection = Xc @ vt[0]
    e0_rows = np.sqrt((e0 ** 2).sum(axis=1))
    # The dot product's rounding, γ_K Σ_k|x̂_ik v̂_k| ≤ γ_K ‖x̂_i‖‖v̂‖ (Cauchy–Schwarz).
    error = (e0_rows + rows * (np.sqrt(2) * min(sin, 1.0) + svd)
             + gamma(k) * (rows + e0_rows) * (1 + svd))
    if not np.isfinite(sin):
        error = np.full(m, np.inf)
    return Bounded(sign_corrected(projection.reshape(h, w)), error.reshape(h, w)).cast()


def sign_decided(A, result: Bounded) -> bool:
    """The flip decision cannot be changed by rounding: |min| and |max| of the projection differ
    by more than twice its largest error."""
    p = eigen_projection(A)
    return bool(abs(abs(p.min()) - abs(p.max())) > 2 * result.e.max())


# -- resizing and multi-layer fusion ----------------------------------------------------------
def interpolation_matrix(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
    """(n_out, n_in) bilinear weights along one axis.

    Half-pixel (cv2.resize INTER_LINEAR, tf.image.resize): src = (d + ½)·n_in/n_out − ½, clamped
    to [0, n_in − 1]. align_corners (torch.nn.UpsamplingBilinear2d): src = d·(n_in − 1)/(n_out − 1).
    """
    d = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = d * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(1)
    else:
        src = np.clip((d + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    low = np.minimum(np.floor(src).astype(int), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = src - low
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), low), 1.0 - frac)
    np.add.at(weights, (np.arange(n_out), high), frac)
    return weights


def resize(x: Bounded, size: tuple[int, int], align_corners: bool = False) -> Bounded:
    """Bilinear resize of a 2-D map to size = (height, width), with the rounding of a float32 resize.

    The weights come from coordinates of magnitude ≤ n_in computed in ~3 operations, then
    1 − frac: each weight errs by ≤ 3u(n_in + 2), moving the value by that times the span of the
    values it mixes (≤ 2 max|x|), per axis; the 4-term sum adds γ_4 max|x|; the weights are
    non-negative and sum to 1, so input errors pass through unamplified.
    """
    rows = interpolation_matrix(x.v.shape[0], size[0], align_corners)
    cols = interpolation_matrix(x.v.shape[1], size[1], align_corners)
    scale = np.abs(x.v).max() + x.e.max()
    coordinates = sum(3 * U32 * (n + 2) * 2 for n in x.v.shape)
    return Bounded(rows @ x.v @ cols.T, rows @ x.e @ cols.T + (gamma(4) + coordinates) * scale)


def scale(x: Bounded, eps: float = EPS_SCALE) -> Bounded:
    """pytorch-grad-cam's scale_cam_image: x − min(x), then / (max of that + eps)."""
    shifted = x - x.min()
    return shifted / (shifted.max() + Bounded.const(eps))


def fuse(maps: list[Bounded], size: tuple[int, int]) -> Bounded:
    """pytorch-grad-cam's multi-layer recipe: each map ReLU'd and scaled, resized (cv2 half-pixel
    bilinear) to size = (height, width), averaged over layers, scaled again."""
    scaled = [resize(scale(m.relu()), size) for m in maps]
    return scale(stack(scaled).mean(0)).cast()


# -- Score-CAM ---------------------------------------------------------------------------------
def scorecam_masks(A: Bounded, size: tuple[int, int], align_corners: bool) -> list[Bounded]:
    """Each channel upsampled to the input size and min-max scaled: (U − min)/(max − min + 1e-8)."""
    masks = []
    for k in range(A.v.shape[-1]):
        upsampled = resize(A[..., k], size, align_corners)
        masks.append(scale(upsampled, EPS_SCORECAM))
    return masks


def softmax(scores: Bounded) -> Bounded:
    """Softmax over channels: |Δ log w_k| ≤ 2 max|Δs| (log-sum-exp is 1-Lipschitz in the max norm),
    plus (K + 4)u for a float32 exp, sum and division."""
    s = scores.v
    w = np.exp(s - s.max())
    w /= w.sum()
    return Bounded(w, w * (np.expm1(2 * scores.e.max()) + (s.size + 4) * U32))


def scorecam(A: Bounded, scores: Bounded, channels=None) -> Bounded:
    """ReLU(Σ_k softmax(s)_k A_k) over ``channels`` (default all)."""
    if channels is not None:
        A = A[..., np.asarray(channels)]
    return weighted_sum(A, softmax(scores))


def spatial_variance(A: Bounded) -> Bounded:
    """Each channel's variance over positions (Faster Score-CAM picks the largest)."""
    centred = A - A.mean((0, 1))
    return (centred * centred).mean((0, 1))


def assert_close(raw, expected: Bounded, *, what: str = "map", vacuous_ok: bool = False) -> float:
    """``raw`` (float32, engine) is within ``expected``'s bound; return max |error|/bound.

    Unless ``vacuous_ok``, the expected map must somewhere exceed 4× its bound: a map scaled by a
    factor off by more than 25 % would then fail (a bound as large as the map tests nothing).
    """
    raw = np.asarray(raw)
    assert raw.dtype == np.float32, raw.dtype
    assert raw.shape == expected.v.shape, (raw.shape, expected.v.shape)
    assert np.isfinite(raw).all() and np.isfinite(expected.e).all(), what
    assert vacuous_ok or (expected.v > 4 * expected.e).any(), (
        f"{what}: reference (max {expected.v.max():.3g}) never exceeds 4× its bound "
        f"({expected.e.max():.3g}): the check would be vacuous")
    # Our float64 evaluation of the same expression errs by the same bound with u64 for u32.
    bound = expected.e * (1 + U64 / U32)
    error = np.abs(raw.astype(np.float64) - expected.v)
    ratio = error / np.maximum(bound, np.finfo(np.float64).tiny)
    worst = np.unravel_index(np.argmax(ratio), ratio.shape)
    _log_slack(float(ratio[worst]))  # $GRADCAM_SLACK_LOG, as tests/reference.py does
    assert ratio[worst] <= 1.0, (
        f"{what} differs from the reference by {error[worst]:.3g} at {worst} where the bound is "
        f"{bound[worst]:.3g} (engine {raw[worst]:.7g}, reference {expected.v[worst]:.7g})")
    return float(ratio[worst])
