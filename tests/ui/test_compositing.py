"""The image view's pixels without a widget (ui.compositing.Compositor), against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_desktop.ui.explore.compositing import MODES, Compositor

JET_LOW, JET_HIGH = (0, 0, 128), (128, 0, 0)  # OpenCV's jet at 0 and at 1, in RGB


def bgrx_to_rgb(frame: np.ndarray) -> np.ndarray:
    return frame[..., 2::-1]


def flat_picture(h: int = 4, w: int = 6, colour=(100, 60, 200)) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[...] = colour
    return rgb


def test_frames_per_mode_by_hand():
    c = Compositor()
    assert c.frames(1, "overlay") == ()
    c.set_image(flat_picture())
    half = np.zeros((4, 6), np.float32)
    half[:, 3:] = 1.0
    c.set_map(half)
    c.alpha = 0.25
    (overlay,) = c.frames(1, "overlay")
    assert overlay.shape == (4, 6, 4) and (overlay[..., 3] == 255).all()  # BGRX for QImage.Format_RGB32
    # 0.75 * picture + 0.25 * jet: (75, 45, 150 + 32) where the map is 0, (75 + 32, 45, 150) where it is 1.
    assert tuple(bgrx_to_rgb(overlay)[0, 0]) == (75, 45, 182)
    assert tuple(bgrx_to_rgb(overlay)[0, 5]) == (107, 45, 150)
    (heat,) = c.frames(1, "heatmap")
    assert tuple(bgrx_to_rgb(heat)[0, 0]) == JET_LOW and tuple(bgrx_to_rgb(heat)[0, 5]) == JET_HIGH
    (original,) = c.frames(1, "original")
    assert (bgrx_to_rgb(original) == (100, 60, 200)).all()
    left, right = c.frames(1, "side")
    assert np.array_equal(left, original) and np.array_equal(right, overlay)
    c.alpha = 0.0
    assert np.array_equal(c.frames(1, "overlay")[0], original)
    c.alpha = 1.0
    assert np.array_equal(c.frames(1, "overlay")[0], heat)
    assert set(MODES) == {"overlay", "heatmap", "original", "side"}


def test_without_a_map_every_mode_shows_the_picture():
    c = Compositor()
    c.set_image(flat_picture())
    for mode in ("overlay", "heatmap", "original"):
        (frame,) = c.frames(1, mode)
        assert (bgrx_to_rgb(frame) == (100, 60, 200)).all()
    assert len(c.frames(1, "side")) == 2


def test_composited_side_by_side_has_a_white_gap():
    c = Compositor()
    c.set_image(flat_picture(10, 300))
    c.set_map(np.zeros((10, 300), np.float32))
    out = c.composited("side")
    gap = c.gap()
    assert gap == round(0.02 * 300) and out.shape == (10, 600 + gap, 3)
    assert (out[:, 300:300 + gap] == 255).all()
    assert (out[:, :300] == (100, 60, 200)).all()
    with pytest.raises(ValueError):
        Compositor().composited("overlay")


def test_maps_are_checked_and_kept_safely():
    c = Compositor()
    with pytest.raises(ValueError):
        c.set_map(np.zeros((4, 6), np.float32))  # no picture yet
    with pytest.raises(ValueError):
        c.set_image(np.zeros((4, 6), np.uint8))  # not RGB
    c.set_image(flat_picture())
    with pytest.raises(ValueError):
        c.set_map(np.zeros((6, 4), np.float32))  # transposed
    shared = np.full((4, 6), 255, np.uint8)
    shared.flags.writeable = False
    c.set_map(shared)
    assert c.values is shared  # the worker's read-only map is used as it is, not copied
    mine = np.full((4, 6), 255, np.uint8)
    c.set_map(mine)
    mine[:] = 0  # a writable map may be reused by its owner: the compositor kept a copy
    assert (c.values == 255).all()
    with_nan = np.full((4, 6), np.nan, np.float32)
    c.set_map(with_nan)
    assert (c.values == 0).all()
    c.set_image(flat_picture())
    assert c.values is None  # a new picture drops the old map


def test_levels_for_large_pictures():
    c = Compositor()
    c.set_image(np.zeros((100, 100, 3), np.uint8))
    assert c.level_for(0.01) == 1  # small pictures are always composited at full size
    c.set_image(np.zeros((1200, 1600, 3), np.uint8))
    assert c.level_for(1.0) == 1 and c.level_for(0.6) == 1
    assert c.level_for(0.5) == 2 and c.level_for(0.25) == 4
    assert c.level_for(0.01) == 4  # stops before the longest side drops below 256
    c.set_map(np.ones((1200, 1600), np.float32))
    c.alpha = 1.0
    (frame,) = c.frames(4, "overlay")
    assert frame.shape == (300, 400, 4)
    assert tuple(bgrx_to_rgb(frame)[10, 10]) == JET_HIGH
