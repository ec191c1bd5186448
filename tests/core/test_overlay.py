"""Display map scaling, colormaps and blending with hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_desktop.core.overlay import COLORMAPS, blend, colorize, display_map


def test_colormaps_include_required_names():
    assert {"jet", "turbo", "viridis", "inferno", "magma", "plasma", "hot", "bone"} <= set(COLORMAPS)


def test_jet_ends_are_dark_red_and_dark_blue_in_rgb():
    color = colorize(np.array([[1.0, 0.0]], np.float32), "jet")
    assert color.dtype == np.uint8 and color.shape == (1, 2, 3)
    assert tuple(color[0, 0]) == (128, 0, 0)  # dark red, RGB order (OpenCV gives BGR)
    assert tuple(color[0, 1]) == (0, 0, 128)  # dark blue


def test_every_colormap_colorizes():
    d = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    for name in COLORMAPS:
        c = colorize(d, name)
        assert c.shape == (16, 16, 3) and c.dtype == np.uint8
        assert len(np.unique(c.reshape(-1, 3), axis=0)) > 16, name


def test_uint8_display_equals_float_display():
    d = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    q = np.rint(d * 255).astype(np.uint8)
    np.testing.assert_array_equal(colorize(d, "viridis"), colorize(q, "viridis"))


def test_display_map_max_normalisation_keeps_zero():
    raw = np.array([[0.0, 2.0], [0.0, 4.0]], np.float32)
    d, flat = display_map(raw, (2, 2))
    assert not flat
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, [[0.0, 0.5], [0.0, 1.0]])


def test_display_map_upsamples_non_square_without_swapping():
    raw = np.zeros((7, 9), np.float32)
    raw[0, 8] = 3.0  # hot top-right corner
    d, flat = display_map(raw, (300, 400))  # (height, width)
    assert not flat
    assert d.shape == (300, 400)
    assert d.max() == 1.0 and d.min() >= 0.0
    y, x = np.unravel_index(np.argmax(d), d.shape)
    assert y < 30 and x > 370  # still top-right
    assert d[-1, 0] == 0.0


def test_display_map_max_is_exactly_one_after_upsampling():
    rng = np.random.default_rng(0)
    d, flat = display_map(rng.random((7, 7)).astype(np.float32) * 1e-7, (224, 224))
    assert not flat
    assert d.max() == 1.0
    assert np.isfinite(d).all()


@pytest.mark.parametrize(
    "raw",
    [
        np.zeros((7, 7), np.float32),
        np.full((7, 7), 5.0, np.float32),  # constant: no location information
        np.full((7, 7), np.nan, np.float32),
        np.full((3, 3), -1.0, np.float32),
    ],
)
def test_flat_maps_give_zeros_and_flag(raw):
    d, flat = display_map(raw, (10, 12))
    assert flat
    assert d.shape == (10, 12) and d.dtype == np.float32
    assert np.isfinite(d).all() and not d.any()


def test_nan_and_inf_are_sanitised():
    raw = np.array([[np.nan, 1.0], [np.inf, 2.0]], np.float32)
    d, flat = display_map(raw, (2, 2))
    assert not flat
    np.testing.assert_array_equal(d, [[0.0, 0.5], [0.0, 1.0]])


def test_blend_alpha_zero_is_image_and_one_is_colormap():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    d = rng.random((6, 8)).astype(np.float32)
    np.testing.assert_array_equal(blend(rgb, d, 0.0), rgb)
    np.testing.assert_array_equal(blend(rgb, d, 1.0, "turbo"), colorize(d, "turbo"))
    # alpha is clamped, not rejected
    np.testing.assert_array_equal(blend(rgb, d, -3.0), rgb)
    np.testing.assert_array_equal(blend(rgb, d, 7.0), colorize(d))


def test_blend_half_is_hand_computed():
    rgb = np.full((2, 3, 3), 100, np.uint8)
    d = np.ones((2, 3), np.float32)  # jet(1) = (128, 0, 0)
    out = blend(rgb, d, 0.5, "jet")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert (out == np.array([114, 50, 50], np.uint8)).all()


def test_blend_errors():
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="jet"):
        blend(rgb, np.zeros((4, 4), np.float32), 0.5, "rainbow-unicorn")
    with pytest.raises(ValueError, match="jet"):
        colorize(np.zeros((4, 4), np.float32), "nope")
    with pytest.raises(ValueError, match="does not match"):
        blend(rgb, np.zeros((4, 5), np.float32), 0.5)
