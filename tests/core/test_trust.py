"""Issue 8's definitions, checked against hand-written float64 references (no model involved).

Every expected value is built here from the issue's text — a Python sort with an explicit tie key,
boolean masks, a hand-made Gaussian kernel, hand-computed curves and ranks — never from
gradcam_desktop.core.trust's own helpers.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from gradcam_desktop.core import trust
from gradcam_desktop.core.trust import TrustReport

from reference import U64, gamma
from trust_reference import bilinear_by_hand, draws_match, first_pixels, gaussian_blur_by_hand, order_by_hand


# -- S and the pixel order -----------------------------------------------------------------------
def test_pixel_order_sorts_descending_and_breaks_ties_row_major():
    saliency = np.array([[1.0, 3.0, 3.0, -0.0],
                         [2.0, 3.0, 1.0, 0.0],
                         [0.0, 2.0, 5.0, 1.0]], np.float32)
    # By hand: 5 (10), then the 3s (1, 2, 5), the 2s (4, 9), the 1s (0, 6, 11), the zeros (3, 7, 8):
    # −0.0 and 0.0 are the same value, so they too keep row-major order.
    expected = [10, 1, 2, 5, 4, 9, 0, 6, 11, 3, 7, 8]
    assert list(trust.pixel_order(saliency)) == expected
    assert order_by_hand(saliency) == expected


def test_pixel_order_matches_the_sort_on_a_map_with_many_ties():
    rng = np.random.default_rng(3)
    saliency = rng.integers(0, 4, size=(13, 11)).astype(np.float32)  # 143 pixels, 4 values
    assert list(trust.pixel_order(saliency)) == order_by_hand(saliency)


@pytest.mark.parametrize("raw_shape, size", [((4, 4), (16, 16)), ((5, 7), (12, 16)), ((8, 8), (32, 32))])
def test_upsample_is_bilinear_with_aligned_pixel_centres(raw_shape, size):
    raw = np.random.default_rng(4).random(raw_shape).astype(np.float32) * 3
    saliency = trust.upsample(raw, size)
    assert saliency.shape == size
    # Each output is Σ of 4 neighbours × products of two float32 weights: γ_8 of Σ|w·v| ≤ max|raw|.
    np.testing.assert_allclose(saliency, bilinear_by_hand(raw, *size), rtol=0, atol=gamma(8) * float(np.abs(raw).max()))


def test_upsample_keeps_a_map_already_at_the_input_size():
    raw = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(trust.upsample(raw, (3, 4)), raw)


# -- deletion and insertion inputs ---------------------------------------------------------------
@pytest.mark.parametrize("height, width, steps, k", [(6, 7, 4, 11), (13, 11, 50, 3), (10, 10, 50, 2)])
def test_deletion_zeroes_the_first_i_k_pixels_in_every_channel(height, width, steps, k):
    # 6×7 = 42 = 3·11 + 9: the last step deletes the 9 left; 13×11 = 143 < 50·3: from step 48 on
    # every pixel is gone (i·k = 144 ≥ 143); 10×10: k divides H·W exactly.
    assert math.ceil(height * width / steps) == k
    rng = np.random.default_rng(5)
    picture = rng.normal(size=(height, width, 2)).astype(np.float32) + 3.0  # no pixel starts at 0
    saliency = rng.integers(0, 5, size=(height, width)).astype(np.float32)
    order = order_by_hand(saliency)
    produced = list(trust.deletion_inputs(picture, np.array(order), steps))
    assert len(produced) == steps + 1
    for i, x_i in enumerate(produced):
        deleted = first_pixels(order, i * k, height, width)
        expected = np.where(deleted[..., None], 0.0, picture.astype(np.float64))
        np.testing.assert_array_equal(x_i, expected, err_msg=f"X_{i}")
    assert not produced[-1].any()  # X_n: every pixel deleted
    np.testing.assert_array_equal(produced[0], picture)


def test_deletion_default_is_fifty_steps():
    picture = np.ones((10, 10, 3), np.float32)
    assert trust.STEPS == 50
    assert len(list(trust.deletion_inputs(picture, np.arange(100)))) == 51
    assert len(list(trust.insertion_inputs(picture, np.arange(100)))) == 51


@pytest.mark.parametrize("height, width, channels, steps", [(9, 12, 3, 50), (14, 8, 1, 6)])
def test_insertion_starts_from_the_gaussian_blur_and_puts_back_pixels_in_order(height, width, channels, steps):
    rng = np.random.default_rng(6)
    picture = (rng.random((height, width, channels)) * 255).astype(np.float32)
    saliency = rng.integers(0, 6, size=(height, width)).astype(np.float32)
    order = order_by_hand(saliency)
    k = math.ceil(height * width / steps)
    blurred = gaussian_blur_by_hand(picture)
    # OpenCV blurs in float32: two passes of 11 terms, each with float32-rounded weights, err by
    # ≤ γ_12 of the sum of |terms| each; the second pass also carries the first's error. The
    # sum of |terms| is the (positive-kernel) blur of |X|.
    tolerance = (2 * gamma(12) + gamma(12) ** 2) * gaussian_blur_by_hand(np.abs(picture)) + gamma(22, U64) * 255
    produced = list(trust.insertion_inputs(picture, np.array(order), steps))
    assert len(produced) == steps + 1
    for i, x_i in enumerate(produced):
        x_i = np.asarray(x_i, np.float64).reshape(height, width, channels)
        inserted = np.broadcast_to(first_pixels(order, i * k, height, width)[..., None], x_i.shape)
        np.testing.assert_array_equal(x_i[inserted], picture[inserted], err_msg=f"X_{i}: inserted pixels")
        error = np.abs(x_i - blurred)[~inserted]
        assert np.all(error <= tolerance[~inserted]), f"X_{i}: blurred pixels off by {error.max()}"
    np.testing.assert_array_equal(np.asarray(produced[-1]).reshape(picture.shape), picture)


def test_the_blur_is_not_the_identity_on_this_picture():
    """Guards the test above: a picture whose blur were itself would not tell blur from no blur."""
    picture = (np.random.default_rng(6).random((9, 12, 3)) * 255).astype(np.float32)
    assert np.abs(gaussian_blur_by_hand(picture) - picture).max() > 10


# -- AUC, Average Drop, Increase in Confidence ---------------------------------------------------
@pytest.mark.parametrize("curve, expected", [
    ([1.0, 0.5, 0.25, 0.0, 0.0], 0.3125),  # trapezoids of width ¼: 0.1875 + 0.09375 + 0.03125 + 0
    ([0.0, 0.25, 0.5, 0.75, 1.0], 0.5),  # a straight line from 0 to 1
    ([0.375] * 51, 0.375),  # a constant curve's area is the constant
    ([0.9, 0.3, 0.1], 0.4),  # (1.3 − 0.5) / 2
])
def test_auc_is_the_trapezoid_rule_on_the_unit_interval(curve, expected):
    # float64: a sum of n + 3 terms of |p| ≤ 1 errs by ≤ γ_{n+3}(u64) · (n + 1); the division adds u.
    bound = gamma(len(curve) + 3, U64) * len(curve) + U64
    assert trust.auc(curve) == pytest.approx(expected, abs=bound)
    report = TrustReport(steps=len(curve) - 1, deletion_curve=np.array(curve), insertion_curve=np.array(curve[::-1]),
                         original=0.5, masked=0.5)
    assert report.deletion_auc == pytest.approx(expected, abs=bound)
    assert report.insertion_auc == pytest.approx(expected, abs=bound)  # the trapezoid rule is symmetric


@pytest.mark.parametrize("original, masked, drop, increase", [
    (0.8, 0.6, 25.0, False),  # 100 · 0.2 / 0.8
    (0.5, 0.125, 75.0, False),
    (0.5, 0.7, 0.0, True),  # O > Y: no drop, an increase
    (0.4, 0.4, 0.0, False),  # equal: neither
    (0.0, 0.3, 0.0, True),  # Y = 0: 100·max(0, −O)/0 is 0/0; the module defines it as 0 (no drop possible)
    (0.0, 0.0, 0.0, False),
])
def test_average_drop_and_increase_in_confidence(original, masked, drop, increase):
    report = TrustReport(steps=2, deletion_curve=np.zeros(3), insertion_curve=np.zeros(3), original=original, masked=masked)
    assert report.average_drop == pytest.approx(drop, abs=100 * 4 * U64)
    assert math.isfinite(report.average_drop)
    assert bool(report.increase_in_confidence) is increase
    assert trust.average_drop(original, masked) == pytest.approx(drop, abs=100 * 4 * U64)


# -- Spearman ------------------------------------------------------------------------------------
def test_spearman_with_ties_matches_the_hand_computed_value():
    a = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    b = np.array([2.0, 1.0, 4.0, 4.0, 6.0])
    # Average ranks: a → 1, 2.5, 2.5, 4, 5; b → 2, 1, 3.5, 3.5, 5. Centred (mean 3): a −2, −½, −½, 1, 2;
    # b −1, −2, ½, ½, 2. Σ products = 2 + 1 − ¼ + ½ + 4 = 29/4; Σ squares = 19/2 each: ρ = 29/38.
    assert trust.spearman(a, b) == pytest.approx(29 / 38, abs=16 * U64)
    assert trust.spearman(b, a) == pytest.approx(29 / 38, abs=16 * U64)


def test_spearman_of_maps_flattens_them_and_sees_only_ranks():
    raw = np.array([[0.0, 0.5, 0.5], [2.0, 0.0, 9.0]], np.float32)
    assert trust.spearman(raw, raw) == pytest.approx(1.0, abs=8 * U64)
    assert trust.spearman(raw, np.exp(raw)) == pytest.approx(1.0, abs=8 * U64)  # any increasing function
    assert trust.spearman(raw, -raw) == pytest.approx(-1.0, abs=8 * U64)
    assert math.isnan(trust.spearman(raw, np.ones_like(raw)))  # a flat map has no ranking


def test_spearman_agrees_with_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")  # not a dependency: only if it happens to be there
    rng = np.random.default_rng(8)
    for _ in range(5):
        a, b = rng.integers(0, 6, 200).astype(float), rng.integers(0, 6, 200).astype(float)
        assert trust.spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)


# -- redraw: the sanity check's re-initialisation ------------------------------------------------
def test_redraw_keeps_mean_and_std_of_a_signed_tensor():
    rng = np.random.default_rng(9)
    values = (rng.normal(0.3, 2.0, size=(40, 1000)) ** 3).astype(np.float32)  # heavy-tailed, signed
    drawn = trust.redraw(values, np.random.default_rng(10))
    assert drawn.shape == values.shape and drawn.dtype == values.dtype
    assert draws_match(values, drawn) == []
    assert not np.array_equal(drawn, values)


def test_redraw_keeps_a_non_negative_tensor_non_negative_with_its_mean_and_std():
    """A BatchNorm moving variance must stay ≥ 0, and (issue 8) be drawn with its own mean and std."""
    rng = np.random.default_rng(11)
    variance = rng.exponential(1.0, size=40000).astype(np.float32)  # mean ≈ std, as BN variances often are
    drawn = trust.redraw(variance, np.random.default_rng(12))
    assert drawn.min() >= 0
    assert draws_match(variance, drawn) == []


def test_redraw_is_seeded_and_keeps_a_constant_tensor():
    values = np.random.default_rng(13).normal(size=(3, 3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(trust.redraw(values, np.random.default_rng(1)), trust.redraw(values, np.random.default_rng(1)))
    assert not np.array_equal(trust.redraw(values, np.random.default_rng(1)), trust.redraw(values, np.random.default_rng(2)))
    ones = np.ones(7, np.float32)  # e.g. an untrained BatchNorm gamma: std 0 ⇒ the constant itself
    np.testing.assert_array_equal(trust.redraw(ones, np.random.default_rng(1)), ones)


# -- the JSON record -----------------------------------------------------------------------------
def test_record_has_the_issue_keys_with_n_plus_one_values_per_curve():
    steps = 4
    deletion, insertion = np.array([0.9, 0.5, 0.25, 0.125, 0.0]), np.array([0.1, 0.2, 0.6, 0.8, 0.9])
    report = TrustReport(steps=steps, deletion_curve=deletion, insertion_curve=insertion, original=0.9, masked=0.45,
                         sanity=[trust.SanityStep(["head"], 0.25, np.zeros((2, 2))),
                                 trust.SanityStep(["head", "conv"], float("nan"), np.zeros((2, 2)))])
    record = json.loads(json.dumps(report.record(), allow_nan=False))  # plain JSON, no NaN
    for key in ("deletion_auc", "insertion_auc", "deletion_curve", "insertion_curve", "average_drop",
                "increase_in_confidence", "steps", "sanity"):
        assert key in record, key
    assert record["steps"] == steps
    assert record["deletion_curve"] == pytest.approx(list(deletion), abs=0) and len(record["deletion_curve"]) == steps + 1
    assert record["insertion_curve"] == pytest.approx(list(insertion), abs=0) and len(record["insertion_curve"]) == steps + 1
    # (Σ p − (p_0 + p_n)/2)/n by hand: deletion (1.775 − 0.45)/4, insertion (2.6 − 0.5)/4.
    assert record["deletion_auc"] == pytest.approx(1.325 / 4, abs=1e-15)
    assert record["insertion_auc"] == pytest.approx(2.1 / 4, abs=1e-15)
    assert record["average_drop"] == pytest.approx(50.0, abs=1e-12)
    assert record["increase_in_confidence"] is False
    assert record["sanity"] == [{"randomized": ["head"], "spearman": 0.25},
                                {"randomized": ["head", "conv"], "spearman": None}]


def test_cv2_default_border_is_reflect_101():
    """The hand blur assumes OpenCV's default border; check that assumption on a 1-D step."""
    picture = np.zeros((1, 12, 1), np.float32)
    picture[0, :3] = 1.0
    ours = gaussian_blur_by_hand(np.repeat(picture, 12, axis=0))[0, :, 0]
    theirs = cv2.GaussianBlur(np.repeat(picture, 12, axis=0)[..., 0], (11, 11), 5.0)[0]
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=3 * gamma(12))
