"""Issue 19's "where the object is" (core/inside_share.py): inside share, masks and boxes.

References: values worked out by hand (OpenCV's bilinear resize samples the source at
(x + 0.5) / scale − 0.5, clamped at the borders); an independent computation with cv2.resize and
NumPy sums; the overlay's own ``display_map``. Tolerance of the independent computation: the
module resizes a float32 copy scaled by its maximum, the reference the float64 map; each upsampled
value is a sum of at most four non-negative weighted terms, so it differs by at most about 6 float32
roundings (scaling, cast, two products, two sums) relative — and the share, a ratio of two sums of
such values, by at most twice that.
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core import inside_share as share_module
from gradcam_desktop.core.errors import LabelError
from gradcam_desktop.core.inside_share import (
    MaskError,
    box_key,
    boxes_from_csv,
    energy_map,
    inside_share,
    mask_from_boxes,
    mask_from_png,
    masks_dir_lookup,
    object_mask,
)
from gradcam_desktop.core.labels import MAX_LINE
from gradcam_desktop.core.overlay import display_map

EPS32 = float(np.finfo(np.float32).eps)
SHARE_RTOL = 2 * 6 * EPS32


def one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and text
    return text


# ----------------------------------------------------------------------------------------------- shares
def test_left_half_map_with_left_half_mask_is_all_inside():
    raw = np.zeros((6, 8))
    raw[:, :4] = 1.0
    mask = np.zeros((6, 8), bool)
    mask[:, :4] = True
    assert inside_share(raw, mask, (6, 8)) == 1.0
    assert inside_share(raw, ~mask, (6, 8)) == 0.0


def test_upsampled_as_the_overlay_by_hand():
    # Columns [1, 0] to 8 pixels (scale 4): OpenCV samples x = (i + 0.5) / 4 − 0.5 = −0.375 … 1.375,
    # clamped to [0, 1], giving 1, 1, 0.875, 0.625, 0.375, 0.125, 0, 0: 3.5 of 4 in the left half.
    raw = np.array([[1.0, 0.0], [1.0, 0.0]])
    mask = np.zeros((3, 8), bool)
    mask[:, :4] = True
    np.testing.assert_allclose(energy_map(raw, (3, 8))[0], [1, 1, 0.875, 0.625, 0.375, 0.125, 0, 0], atol=EPS32)
    assert math.isclose(inside_share(raw, mask, (3, 8)), 3.5 / 4.0, rel_tol=SHARE_RTOL)


def test_uniform_map_gives_the_mask_area_fraction():
    mask = np.zeros((40, 50), bool)
    mask[10:30, 5:25] = True  # 400 of 2,000 pixels
    for raw in (np.ones((7, 7)), np.full((40, 50), 3.0), np.full((1, 1), 1e-30)):
        assert inside_share(raw, mask, (40, 50)) == pytest.approx(0.2, rel=1e-12)


def test_random_map_and_box_against_an_independent_computation():
    rng = np.random.default_rng(11)
    for _ in range(5):
        raw = rng.random((7, 9)) - 0.2  # some negative values: not energy
        height, width = int(rng.integers(20, 300)), int(rng.integers(20, 300))
        x0, x1 = sorted(rng.integers(0, width, 2))
        y0, y1 = sorted(rng.integers(0, height, 2))
        mask = mask_from_boxes([(float(x0), float(y0), float(x1) + 1, float(y1) + 1)], (height, width))
        up = cv2.resize(np.maximum(raw, 0.0), (width, height), interpolation=cv2.INTER_LINEAR)
        expected = up[y0:y1 + 1, x0:x1 + 1].sum() / up.sum()
        assert math.isclose(inside_share(raw, mask, (height, width)), expected, rel_tol=SHARE_RTOL, abs_tol=1e-12)


def test_energy_is_what_the_overlay_shows():
    raw = np.random.default_rng(12).random((7, 7)) * 5.0
    shown, flat = display_map(raw, (60, 45))
    energy = energy_map(raw, (60, 45))
    assert not flat
    np.testing.assert_allclose(energy / energy.max(), shown, atol=4 * EPS32)


def test_map_without_energy_has_no_share():
    mask = np.ones((10, 10), bool)
    for raw in (np.zeros((7, 7)), -np.ones((7, 7)), np.full((7, 7), np.nan)):
        assert math.isnan(inside_share(raw, mask, (10, 10)))


def test_mask_of_another_size_is_one_line():
    with pytest.raises(MaskError) as caught:
        inside_share(np.ones((7, 7)), np.ones((10, 12), bool), (12, 10))
    assert "12 x 10" in one_line(caught.value) and "10 x 12" in str(caught.value)
    assert isinstance(caught.value, LabelError)


# ------------------------------------------------------------------------------------------------- boxes
def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8", newline="")
    return str(path)


def test_boxes_csv_is_read_with_several_boxes_a_picture(tmp_path):
    absolute = str(tmp_path / "elsewhere" / "c.png")
    table = write(tmp_path / "boxes.csv", "path,x0,y0,x1,y1\n"
                  "a.png,1,2,5,6\n"
                  "\n"
                  "sub/b.png, 0.5 ,0,10,4.5,\n"
                  "a.png,7,0,9,3\n"
                  f"{absolute},0,0,1,1\n")
    boxes = boxes_from_csv(table)
    assert boxes == {box_key(tmp_path / "a.png"): [(1, 2, 5, 6), (7, 0, 9, 3)],
                     box_key(tmp_path / "sub" / "b.png"): [(0.5, 0, 10, 4.5)],
                     box_key(absolute): [(0, 0, 1, 1)]}
    assert boxes_from_csv(write(tmp_path / "no_header.csv", "a.png,1,2,5,6\n")) == {
        box_key(tmp_path / "a.png"): [(1, 2, 5, 6)]}


@pytest.mark.parametrize("bad, words", [
    ("a.png,1,2,3\n", "expected path,x0,y0,x1,y1"),
    ("a.png,1,2,three,4\n", "expected path,x0,y0,x1,y1"),
    ("a.png,1,2,nan,4\n", "expected path,x0,y0,x1,y1"),
    (",1,2,3,4\n", "expected path,x0,y0,x1,y1"),
    ("a.png,1,2,3,4,5\n", "expected path,x0,y0,x1,y1"),
    ("a.png,5,2,3,4\n", "x0 < x1"),
    ("a.png,1,4,3,4\n", "y0 < y1"),
    ('a.png,1,2,"3,4\n', "expected"),  # an unclosed quote swallows the rest: a wrong row, not a hang
])
def test_bad_rows_are_one_line_naming_the_line(tmp_path, bad, words):
    table = write(tmp_path / "boxes.csv", "path,x0,y0,x1,y1\nok.png,0,0,1,1\n" + bad)
    with pytest.raises(MaskError) as caught:
        boxes_from_csv(table)
    text = one_line(caught.value)
    assert "line 3" in text and words in text and "boxes.csv" in text


def test_hostile_boxes_files_are_refused_early(tmp_path):
    long_line = write(tmp_path / "long.csv", "ok.png,0,0,1,1\n" + "x" * (2 * MAX_LINE) + ",0,0,1,1\n")
    with pytest.raises(MaskError) as caught:
        boxes_from_csv(long_line)
    assert "line 2 is longer than" in one_line(caught.value)
    many = write(tmp_path / "many.csv", "".join(f"{i}.png,0,0,1,1\n" for i in range(10)))
    with pytest.raises(MaskError) as caught:
        boxes_from_csv(many, limit=9)
    assert "more than 9 boxes" in one_line(caught.value)
    assert len(boxes_from_csv(many, limit=10)) == 10
    (tmp_path / "latin1.csv").write_bytes("caf\xe9.png,0,0,1,1\n".encode("latin-1"))
    with pytest.raises(MaskError) as caught:
        boxes_from_csv(tmp_path / "latin1.csv")
    assert "UTF-8" in one_line(caught.value)
    with pytest.raises(MaskError) as caught:
        boxes_from_csv(tmp_path / "missing.csv")
    assert "cannot be read" in one_line(caught.value)


def test_boxes_are_clipped_to_the_picture_by_pixel_centres():
    mask = mask_from_boxes([(-5, -5, 3, 2)], (4, 6))
    expected = np.zeros((4, 6), bool)
    expected[0:2, 0:3] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(mask_from_boxes([(10, 10, 20, 20), (-3, 0, -1, 4)], (4, 6)), False)
    np.testing.assert_array_equal(mask_from_boxes([(0, 0, 1e300, 1e300)], (4, 6)), True)
    # Pixel i is inside when i + 0.5 is in [x0, x1): 1.6 … 3.5 covers pixels 2 (centre 2.5) only.
    np.testing.assert_array_equal(mask_from_boxes([(1.6, 0, 3.5, 1)], (1, 6))[0], [0, 0, 1, 0, 0, 0])
    union = mask_from_boxes([(0, 0, 2, 2), (1, 1, 3, 3)], (4, 4))
    assert union.sum() == 4 + 4 - 1


# ------------------------------------------------------------------------------------------------- masks
def test_png_mask_non_zero_is_object(tmp_path):
    pixels = np.zeros((12, 16), np.uint8)
    pixels[3:9, 4:10] = 7
    Image.fromarray(pixels).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(mask_from_png(tmp_path / "grey.png", (12, 16)), pixels != 0)

    rgba = np.zeros((12, 16, 4), np.uint8)
    rgba[..., 3] = 255  # alpha everywhere: not object by itself
    rgba[2:5, 1:3, 1] = 1  # a faint green object
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(mask_from_png(tmp_path / "rgba.png", (12, 16)), rgba[..., 1] != 0)

    palette = Image.frombytes("P", (16, 12), pixels.tobytes())  # indices 0 and 7
    palette.putpalette([255, 255, 255] + [0, 0, 0] * 255)  # index 0 drawn white: still background
    palette.save(tmp_path / "palette.png")
    with Image.open(tmp_path / "palette.png") as stored:
        assert stored.mode == "P" and sorted(np.unique(np.asarray(stored)).tolist()) == [0, 7]
    np.testing.assert_array_equal(mask_from_png(tmp_path / "palette.png", (12, 16)), pixels != 0)


def test_png_mask_of_a_scaled_picture_is_resized_by_nearest_neighbour(tmp_path):
    small = np.zeros((6, 8), np.uint8)
    small[1:4, 2:5] = 255
    Image.fromarray(small).save(tmp_path / "half.png")
    big = mask_from_png(tmp_path / "half.png", (12, 16))
    np.testing.assert_array_equal(big, np.repeat(np.repeat(small != 0, 2, axis=0), 2, axis=1))
    with pytest.raises(MaskError) as caught:
        mask_from_png(tmp_path / "half.png", (12, 8))  # another shape: another picture's mask
    assert "8 x 6" in one_line(caught.value) and "8 x 12" in str(caught.value)


def test_unreadable_png_masks_are_one_line(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(MaskError) as caught:
        mask_from_png(tmp_path / "text.png", (4, 4))
    assert "cannot be read as an image" in one_line(caught.value)
    with pytest.raises(MaskError) as caught:
        mask_from_png(tmp_path / "missing.png", (4, 4))
    one_line(caught.value)
    with pytest.raises(MaskError):
        mask_from_png(tmp_path, (4, 4))  # a folder


def test_masks_folder_lookup_and_object_mask(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    pixels = np.zeros((4, 6), np.uint8)
    pixels[0, 0] = 1
    Image.fromarray(pixels).save(masks / "cat.png")
    assert masks_dir_lookup(masks, "cat") == masks / "cat.png"
    assert masks_dir_lookup(masks, "dog") is None
    assert masks_dir_lookup(masks, "..") is None and masks_dir_lookup(masks, f"x{os.sep}cat") is None

    boxes = {box_key(tmp_path / "pics" / "cat.jpg"): [(0, 0, 6, 4)], box_key(tmp_path / "pics" / "dog.jpg"): [(0, 0, 1, 1)]}
    from_png = object_mask(tmp_path / "pics" / "cat.jpg", (4, 6), masks_dir=masks, boxes=boxes)
    np.testing.assert_array_equal(from_png, pixels != 0)  # the mask file first
    from_boxes = object_mask(tmp_path / "pics" / "dog.jpg", (4, 6), masks_dir=masks, boxes=boxes)
    assert from_boxes is not None and from_boxes.sum() == 1 and from_boxes[0, 0]
    assert object_mask(tmp_path / "pics" / "owl.jpg", (4, 6), masks_dir=masks, boxes=boxes) is None


def test_share_with_a_box_mask_by_hand():
    raw = np.zeros((10, 10))
    raw[2:4, 2:4] = 1.0
    raw[8, 8] = 2.0  # energy 4 inside the box, 2 outside: 4 / 6
    mask = mask_from_boxes([(2, 2, 4, 4)], (10, 10))
    assert math.isclose(inside_share(raw, mask, (10, 10)), 4 / 6, rel_tol=4 * EPS32)
    assert share_module.MAX_BOXES >= 1_000_000
