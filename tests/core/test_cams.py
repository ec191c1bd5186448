"""The reductions in cams.py against hand-computed maps (no TensorFlow involved)."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_desktop.core import cams
from gradcam_desktop.core.errors import MethodError


def test_gradcam_of_a_two_by_two_grid_by_hand():
    # Channel 0 is 1 at the top-left only, channel 1 is 2 at the bottom-right only.
    activations = np.zeros((2, 2, 2), np.float32)
    activations[0, 0, 0] = 1.0
    activations[1, 1, 1] = 2.0
    # mean gradients: α_0 = (4+0+0+0)/4 = 1, α_1 = (−2−2−2−2)/4 = −2
    gradients = np.zeros((2, 2, 2), np.float32)
    gradients[0, 0, 0] = 4.0
    gradients[..., 1] = -2.0
    # Σ_k α_k A_k: top-left 1·1 = 1; bottom-right −2·2 = −4 → ReLU → 0; elsewhere 0.
    expected = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    raw = cams.reduce("gradcam", activations, gradients)
    assert raw.dtype == np.float32 and raw.shape == (2, 2)
    np.testing.assert_array_equal(raw, expected)  # exact: small integers in float32


def test_gradcam_is_linear_in_the_gradient_and_clips_negative_evidence():
    rng = np.random.default_rng(0)
    activations = rng.random((3, 4, 5)).astype(np.float32)
    gradients = rng.normal(size=(3, 4, 5)).astype(np.float32)
    plus = cams.gradcam(activations, gradients)
    minus = cams.gradcam(activations, -gradients)
    # ReLU(s) and ReLU(−s) never both positive, and together they give |s|.
    assert not np.any((plus > 0) & (minus > 0))
    weighted = np.einsum("hwk,k->hw", activations.astype(np.float64), gradients.astype(np.float64).mean(axis=(0, 1)))
    # float32 sums of 5 terms: error ≤ 5·ε32·Σ|terms| per position.
    bound = 5 * np.finfo(np.float32).eps * np.einsum(
        "hwk,k->hw", np.abs(activations), np.abs(gradients.mean(axis=(0, 1)))) + 1e-30
    assert np.all(np.abs((plus + minus) - np.abs(weighted)) <= 2 * bound)


def test_broken_numbers_become_zero_not_nan():
    activations = np.full((2, 2, 1), np.nan, np.float32)
    gradients = np.ones((2, 2, 1), np.float32)
    assert np.array_equal(cams.reduce("gradcam", activations, gradients), np.zeros((2, 2), np.float32))


def test_unknown_method_is_one_clear_line():
    with pytest.raises(MethodError, match="Unknown method 'gradcm'. Choose one of: gradcam"):
        cams.method("gradcm")
    assert cams.method_names()[0] == "gradcam"
