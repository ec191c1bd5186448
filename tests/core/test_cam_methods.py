"""The gradient reductions, Eigen-CAM and the multi-layer fusion of cams.py against references
written from issue 7's formulas (tests/cam_reference.py): small cases by hand, random arrays
against float64 with a derived error bound. No TensorFlow involved."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

import cam_reference as ref
from cam_reference import Bounded, assert_close
from gradcam_desktop.core import cams
from gradcam_desktop.core.errors import MethodError

# 2 × 2 positions, 2 channels (A[i, j, k]); S_k = Σ_ij A_k.
#   A^0 = [[1, 2], [3, 4]]   S_0 = 10       g^0 = [[1, 0], [0, 1]]
#   A^1 = [[−2, 3], [1, 1]]  S_1 = 3        g^1 = [[−1, 2], [−1, −1]]
A = np.stack([[[1, 2], [3, 4]], [[-2, 3], [1, 1]]], axis=-1).astype(np.float32)
G = np.stack([[[1, 0], [0, 1]], [[-1, 2], [-1, -1]]], axis=-1).astype(np.float32)
g0A0 = np.array([[1, 0], [0, 4]])  # g^0 ⊙ A^0
g1A1 = np.array([[2, 6], [-1, -1]])  # g^1 ⊙ A^1
BY_HAND_EXACT = {
    # α = (2/4, (−1 + 2 − 1 − 1)/4) = (½, −¼): ½A^0 − ¼A^1
    "gradcam": [[0.5 + 0.5, 1 - 0.75], [1.5 - 0.25, 2 - 0.25]],
    # ReLU(g0A0 + g1A1) = ReLU([[3, 6], [−1, 3]])
    "hirescam": [[3, 6], [0, 3]],
    # ReLU(g0A0) + ReLU(g1A1) = [[1, 0], [0, 4]] + [[2, 6], [0, 0]]: differs from HiResCAM at (1, 1)
    "elementwise": [[3, 6], [0, 4]],
    # ReLU(g^0)A^0 + ReLU(g^1)A^1 = [[1, 0], [0, 4]] + [[0, 6], [0, 0]]: differs from element-wise at
    # (0, 0), where g^1 and A^1 are both negative
    "layercam": [[1, 6], [0, 4]],
}
# XGrad-CAM: w_0 = Σ g0A0 / (S_0 + 1e-7) = 5/(10 + 1e-7), w_1 = Σ g1A1 / (S_1 + 1e-7) = 6/(3 + 1e-7).
W_X = (5 / (10 + 1e-7), 6 / (3 + 1e-7))
# Grad-CAM++: channel 0, g = 1 at two positions: a = 1/(2 + 10·1 + 1e-6), w_0 = 2a.
#   Channel 1: ReLU(g) ≠ 0 only where g = 2: a = 4/(2·4 + 3·8 + 1e-6), w_1 = 2a. Where g = −1,
#   a = 1/(2 − 3 + 1e-6) < 0, but ReLU(g) = 0 removes it.
W_PP = (2 / (12 + 1e-6), 2 * 4 / (32 + 1e-6))


def _weighted(w):
    return np.maximum(w[0] * A[..., 0].astype(np.float64) + w[1] * A[..., 1].astype(np.float64), 0.0)


BY_HAND_RATIONAL = {"xgradcam": _weighted(W_X), "gradcam++": _weighted(W_PP)}


@pytest.mark.parametrize("name", list(BY_HAND_EXACT))
def test_two_by_two_by_hand_exact(name):
    raw = cams.reduce(name, A, G)
    assert raw.dtype == np.float32 and raw.shape == (2, 2)
    # Small integers, halves and quarters: exact in float32 whatever the order of operations.
    np.testing.assert_array_equal(raw, np.array(BY_HAND_EXACT[name], np.float32))
    np.testing.assert_array_equal(ref.gradient_map(name, Bounded(A), Bounded(G)).v, BY_HAND_EXACT[name])


@pytest.mark.parametrize("name", list(BY_HAND_RATIONAL))
def test_two_by_two_by_hand_with_epsilons(name):
    expected = ref.gradient_map(name, Bounded(A), Bounded(G))
    # The reference agrees with the hand computation to float64 rounding (a few terms of size ≤ 7).
    np.testing.assert_allclose(expected.v, BY_HAND_RATIONAL[name], rtol=0, atol=16 * ref.U64 * 7)
    assert_close(cams.reduce(name, A, G), expected, what=name)


def test_epsilons_are_pytorch_grad_cams():
    """1e-6 (Grad-CAM++) and 1e-7 (XGrad-CAM) matter where the sums they guard are that small."""
    activations = np.zeros((2, 2, 1), np.float32)
    gradients = np.zeros((2, 2, 1), np.float32)
    # XGrad-CAM, S = A = 1e-7 at one position, g = 1 there: w = 1e-7/(1e-7 + 1e-7) = ½ (1 without ε).
    activations[0, 0, 0], gradients[0, 0, 0] = 1e-7, 1.0
    expected = ref.gradient_map("xgradcam", Bounded(activations), Bounded(gradients))
    np.testing.assert_allclose(expected.v[0, 0], 0.5 * 1e-7, rtol=1e-6)  # float32(1e-7) ≠ 1e-7
    assert_close(cams.reduce("xgradcam", activations, gradients), expected, what="xgradcam")
    # Grad-CAM++, S = 1, g = 1e-3 at one position: a = 1e-6/(2e-6 + 1e-9 + 1e-6) ≈ ⅓ (½ without ε).
    activations[0, 0, 0], gradients[0, 0, 0] = 1.0, 1e-3
    expected = ref.gradient_map("gradcam++", Bounded(activations), Bounded(gradients))
    np.testing.assert_allclose(expected.v[0, 0], 1e-3 * 1e-6 / (3e-6 + 1e-9), rtol=1e-6)
    assert_close(cams.reduce("gradcam++", activations, gradients), expected, what="gradcam++")


def _random(seed, shape=(7, 5, 6), negative=False):
    rng = np.random.default_rng(seed)
    activations = rng.gamma(2.0, 1.0, size=shape)  # post-ReLU-like, sums far from 0
    if negative:
        activations -= 0.5  # a layer before its activation: some negative values
    gradients = rng.normal(size=shape) * rng.gamma(1.0, 1.0, size=shape[-1])
    return activations.astype(np.float32), gradients.astype(np.float32)


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("name", ref.GRADIENT_METHODS)
def test_random_arrays_against_float64(name, negative):
    informative = 0
    for seed in range(3):
        activations, gradients = _random(seed, negative=negative)
        for sign in (1, -1):  # a map that is 0 everywhere for g may not be for −g
            g = sign * gradients
            expected = ref.gradient_map(name, Bounded(activations), Bounded(g))
            assert_close(cams.reduce(name, activations, g), expected, what=f"{name} #{seed}", vacuous_ok=True)
            informative += bool((expected.v > 4 * expected.e).any())
    assert informative >= 3, "too few maps exceed their bound anywhere: the data tests nothing"


def test_methods_differ_where_their_formulas_do():
    """Each reduction is its own: no two gradient methods give the same map on random data."""
    activations, gradients = _random(7, negative=True)
    maps = {name: cams.reduce(name, activations, gradients) for name in ref.GRADIENT_METHODS}
    for i, first in enumerate(ref.GRADIENT_METHODS):
        for second in ref.GRADIENT_METHODS[i + 1:]:
            assert not np.allclose(maps[first], maps[second], rtol=1e-3, atol=0), (first, second)


def test_gradcam_plus_plus_zero_gradients_give_nothing():
    """a = 0 where g = 0: a channel with zero gradient adds nothing, however large its activations."""
    activations, gradients = _random(3)
    loud = np.concatenate([activations, np.full(activations.shape[:2] + (1,), 1e30, np.float32)], axis=-1)
    silent = np.concatenate([gradients, np.zeros(gradients.shape[:2] + (1,), np.float32)], axis=-1)
    expected = ref.gradient_map("gradcam++", Bounded(activations), Bounded(gradients))
    assert_close(cams.reduce("gradcam++", loud, silent), expected)
    # Zero gradients at some positions of a channel: those positions get a = 0 (hand example
    # above has them too); a channel whose gradient is zero except one position keeps that one.
    single = np.zeros_like(gradients)
    single[2, 3, 1] = 0.5
    s = float(activations[..., 1].astype(np.float64).sum())
    a = 0.25 / (2 * 0.25 + s * 0.125 + 1e-6)
    expected = Bounded(np.maximum(0.5 * a * activations[..., 1].astype(np.float64), 0.0))
    reference = ref.gradient_map("gradcam++", Bounded(activations), Bounded(single))
    np.testing.assert_allclose(reference.v, expected.v, rtol=64 * ref.U64)
    assert_close(cams.reduce("gradcam++", activations, single), reference)


@pytest.mark.parametrize("name", ref.GRADIENT_METHODS + ("eigencam",))
def test_broken_numbers_never_leak(name):
    activations, gradients = _random(4)
    cases = []
    for poison in (np.nan, np.inf, -np.inf):
        a, g = activations.copy(), gradients.copy()
        a[1, 1, 2] = poison
        cases.append((a, gradients))
        g[2, 2, 3] = poison
        cases.append((activations, g))
    # Extreme but finite: float32's largest values and denormals, all in one channel.
    a, g = activations.copy(), gradients.copy()
    a[..., 0], g[..., 0], g[..., 1] = 3e38, 3e38, 1e-44
    cases.append((a, g))
    for a, g in cases:
        raw = cams.reduce(name, a, g)
        assert raw.dtype == np.float32 and raw.shape == activations.shape[:2]
        assert np.isfinite(raw).all() and (raw >= 0).all(), name


# -- Eigen-CAM -----------------------------------------------------------------------------------
def _rank_one(p, mean=(1.0, 2.0), direction=(0.6, 0.8)):
    """A_ij = mean + p_ij · direction: centred, the (H·W)×2 matrix is p ⊗ direction, so the
    projection on its right singular vector ±direction is ±p exactly."""
    p = np.asarray(p, np.float64)
    return (np.asarray(mean) + p[..., None] * np.asarray(direction)).astype(np.float32)


# p sums to 0 (already centred); its largest magnitude, 3, is negative: the rule flips it.
P = np.array([[-3.0, -1.0], [2.0, 2.0]])
EIGEN_BY_HAND = np.array([[3.0, 1.0], [0.0, 0.0]])  # ReLU(−p)


def _flipped_svd(monkeypatch):
    """Make every SVD return the other, equally valid, signs of its singular vectors."""
    svd = np.linalg.svd
    calls = []

    def flipped(*args, **kwargs):
        calls.append(1)
        u, s, vt = svd(*args, **kwargs)
        return -u, s, -vt

    monkeypatch.setattr(np.linalg, "svd", flipped)
    return calls


@pytest.mark.parametrize("flip_svd", [False, True])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_eigencam_sign_rule_by_hand(monkeypatch, sign, flip_svd):
    """Whichever sign the data and the SVD give the projection, the larger extreme ends up positive.

    Without the rule, one of the four runs (p and −p, each SVD sign) would give ReLU(p) =
    [[0, 0], [2, 2]] instead.
    """
    activations = _rank_one(sign * P)
    expected = ref.eigencam(activations)
    np.testing.assert_allclose(expected.v, EIGEN_BY_HAND, atol=1e-6)  # float32 A: 0.6 and 0.8 round
    assert ref.sign_decided(activations, expected)
    calls = _flipped_svd(monkeypatch) if flip_svd else []
    raw = cams.reduce("eigencam", activations, np.zeros_like(activations))
    assert_close(raw, expected, what="eigencam")
    assert not flip_svd or calls, "cams.eigencam no longer calls np.linalg.svd: flip its vectors another way"
    # A mostly negative projection (three of four values below 0 after centring) is flipped too.
    mostly_negative = np.array([[-3.0, -1.0], [-1.0, 5.0]])
    result = cams.reduce("eigencam", _rank_one(sign * mostly_negative), np.zeros_like(activations))
    assert_close(result, Bounded([[0.0, 0.0], [0.0, 5.0]], ref.eigencam(_rank_one(mostly_negative)).e))


def _dominant(seed, shape=(9, 7, 5)):
    """Random activations with one dominant pattern, so σ₁ − σ₂ is large and the bound tight."""
    rng = np.random.default_rng(seed)
    h, w, k = shape
    pattern = rng.normal(size=(h, w)) ** 3  # heavy-tailed: |min| and |max| clearly differ
    direction = rng.normal(size=k)
    activations = rng.gamma(2.0, 1.0, size=k) + 3 * pattern[..., None] * direction + 0.3 * rng.normal(size=shape)
    return activations.astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_eigencam_random_against_float64_and_the_other_svd_sign(monkeypatch, seed):
    activations = _dominant(seed)
    expected = ref.eigencam(activations)
    assert ref.sign_decided(activations, expected)
    gradients = np.random.default_rng(seed).normal(size=activations.shape).astype(np.float32)
    raw = cams.reduce("eigencam", activations, gradients)
    assert_close(raw, expected, what="eigencam")
    # Not class-specific: the gradients play no part.
    np.testing.assert_array_equal(cams.reduce("eigencam", activations, -gradients), raw)
    calls = _flipped_svd(monkeypatch)
    assert_close(cams.reduce("eigencam", activations, gradients), expected, what="eigencam, flipped SVD")
    assert calls


def test_eigencam_centres_the_channels():
    """Adding a constant to a channel changes nothing (each channel's mean is subtracted)."""
    activations = _dominant(9)
    shifted = activations + np.arange(activations.shape[-1], dtype=np.float32) * 10
    # The shifted float32 values rounded by ≤ u|shifted|: an error of A like any other.
    expected = ref.eigencam(activations, error_a=ref.U32 * np.abs(shifted))
    assert ref.sign_decided(activations, expected)
    assert_close(cams.reduce("eigencam", shifted, shifted), expected, what="eigencam, shifted channels")


# -- resizing and fusion -------------------------------------------------------------------------
def test_interpolation_matrices_by_hand():
    a, b = 1.0, 5.0
    # align_corners, 2 → 3: the ends stay, the middle is the average.
    np.testing.assert_allclose(ref.interpolation_matrix(2, 3, True) @ [a, b], [a, 3.0, b])
    # half-pixel, 2 → 4: sources −¼ (clamped to 0), ¼, ¾, 1¼ (clamped to 1).
    np.testing.assert_allclose(ref.interpolation_matrix(2, 4, False) @ [a, b], [a, 2.0, 4.0, b])


@pytest.mark.parametrize("shape,size", [((3, 5), (7, 11)), ((8, 8), (32, 32)), ((12, 20), (6, 9))])
def test_half_pixel_resize_is_cv2_inter_linear(shape, size):
    """The reference's bilinear resize is the one pytorch-grad-cam uses (cv2.resize, INTER_LINEAR)."""
    m = np.random.default_rng(1).random(shape).astype(np.float32)
    resized = cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    assert_close(resized, ref.resize(Bounded(m), size), what="cv2.resize")


@pytest.mark.parametrize("size", [(32, 32), (7, 11)])
def test_fuse_is_pytorch_grad_cams_recipe(size):
    rng = np.random.default_rng(5)
    maps = [np.maximum(rng.normal(size=shape), 0).astype(np.float32) for shape in ((4, 4), (8, 6), (16, 16))]
    maps[1][0, 0] = -1.0  # a negative value: ReLU'd before scaling, so the minimum is 0, not −1
    expected = ref.fuse([Bounded(m) for m in maps], size)
    fused = cams.fuse(maps, size)
    assert_close(fused, expected, what="fused map")
    assert fused.max() <= 1.0 and fused.min() >= 0.0
    # The same maps in another order average the same.
    assert_close(cams.fuse(maps[::-1], size), expected, what="fused map, reversed")


# -- the method table ------------------------------------------------------------------------------
def test_method_table():
    assert cams.method_names() == ["gradcam", "gradcam++", "hirescam", "elementwise", "xgradcam", "layercam",
                                   "eigencam", "scorecam", "saliency", "integrated-gradients", "smoothgrad",
                                   "guided-backprop", "guided-gradcam", "occlusion", "rise"]
    answers_only = ("eigencam", "scorecam", "occlusion", "rise")
    no_layer = ("saliency", "integrated-gradients", "smoothgrad", "guided-backprop", "occlusion", "rise")
    for name in cams.method_names():
        m = cams.method(name)
        assert m.name == name and m.title and m.summary.endswith(".") and m.cost
        assert cams.method(m) is m  # a Method stands for itself
        assert m.class_specific == (name != "eigencam")
        assert m.uses_gradients == (name not in answers_only)
        assert m.uses_layer == (name not in no_layer)
        assert m.stepwise == (name in ("scorecam", "integrated-gradients", "smoothgrad", "occlusion", "rise"))
        assert m.family in cams.FAMILIES and set(m.options) <= set(cams.OPTION_NAMES)
        # A black box without gradients runs exactly the methods that need only answers and no layer.
        assert m.works_with(layers=False, gradients=False) == (name in ("occlusion", "rise"))
        assert m.works_with(layers=False, gradients=True) == (name in no_layer)
    assert cams.method("gradcam++").title == "Grad-CAM++"
    with pytest.raises(MethodError, match="Score-CAM"):
        cams.reduce("scorecam", A, G)
    with pytest.raises(MethodError, match=re.escape("Unknown method 'gradcam+'. Choose one of: gradcam, gradcam++,")):
        cams.reduce("gradcam+", A, G)
