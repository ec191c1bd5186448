"""Image decoding, limits and folder expansion with hand-computed expectations."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core import images
from gradcam_desktop.core.errors import ImageLoadError
from gradcam_desktop.core.images import (
    IMAGE_EXTENSIONS, MAX_PIXELS, find_images, load_image, to_model_input,
)
from gradcam_desktop.core.overlay import display_map


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose IHDR claims width x height RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# --- decoding -------------------------------------------------------------------------------


def test_rgb_png_round_trip_and_metadata(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    p = tmp_path / "photo.png"
    p.write_bytes(_png(Image.fromarray(arr)))
    img = load_image(p)
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (30, 50, 3)  # (h, w) not swapped
    np.testing.assert_array_equal(img.rgb, arr)
    assert img.name == "photo.png" and img.path == str(p) and img.notices == []


def test_exif_orientation_6_rotates_jpeg(tmp_path):
    # Stored 40 wide x 20 tall, red block top-left, blue elsewhere. Orientation 6 means
    # "rotate 90° clockwise to display": 20 wide x 40 tall, the red block at the top-right.
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:] = (0, 0, 255)
    arr[:8, :8] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "phone.jpg"
    Image.fromarray(arr).save(p, "JPEG", quality=95, exif=exif.tobytes())
    rgb = load_image(p).rgb
    assert rgb.shape == (40, 20, 3)
    top_right = rgb[2, 17].astype(int)
    top_left = rgb[2, 2].astype(int)
    assert top_right[0] > 200 and top_right[2] < 60  # red moved here
    assert top_left[2] > 200 and top_left[0] < 60  # blue


def test_rgba_is_composited_on_background(tmp_path):
    px = np.array([[[200, 100, 50, 128], [10, 20, 30, 0], [1, 2, 3, 255]]], np.uint8)
    p = tmp_path / "alpha.png"
    p.write_bytes(_png(Image.fromarray(px, "RGBA")))
    white = load_image(p).rgb
    # 200*128/255 + 255*127/255 = 227.4 → 227; 177.2 → 177; 152.1 → 152
    np.testing.assert_array_equal(white, [[[227, 177, 152], [255, 255, 255], [1, 2, 3]]])
    black = load_image(p, background=(0, 0, 0)).rgb
    # 200*128/255 = 100.4 → 100; 50.2 → 50; 25.1 → 25
    np.testing.assert_array_equal(black, [[[100, 50, 25], [0, 0, 0], [1, 2, 3]]])


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)
    img.putdata([0, 1])
    p = tmp_path / "palette.png"
    p.write_bytes(_png(img, transparency=0))  # index 0 (red) is fully transparent
    rgb = load_image(p, background=(10, 20, 30)).rgb
    np.testing.assert_array_equal(rgb, [[[10, 20, 30], [0, 255, 0]]])


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[65535, 32768, 256, 0]], np.uint16)
    ok, buf = cv2.imencode(".png", values)  # an independent 16-bit writer
    assert ok
    p = tmp_path / "depth.png"
    p.write_bytes(buf.tobytes())
    rgb = load_image(p).rgb
    assert rgb.shape == (1, 4, 3)
    np.testing.assert_array_equal(rgb[0, :, 0], [255, 128, 1, 0])
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_float_tiff_in_unit_range(tmp_path):
    p = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(p)
    np.testing.assert_array_equal(load_image(p).rgb[0, :, 0], [0, 128, 255])


def test_grayscale_gives_three_equal_channels(tmp_path):
    gray = np.array([[0, 77, 255]], np.uint8)
    p = tmp_path / "gray.png"
    p.write_bytes(_png(Image.fromarray(gray, "L")))
    rgb = load_image(p).rgb
    np.testing.assert_array_equal(rgb, np.repeat(gray[:, :, None], 3, axis=2))


def test_non_ascii_path(tmp_path):
    p = tmp_path / "bild-ü-图.png"
    p.write_bytes(_png(Image.new("RGB", (3, 2), (1, 2, 3))))
    img = load_image(p)
    assert img.name == "bild-ü-图.png"
    assert img.rgb.shape == (2, 3, 3) and tuple(img.rgb[1, 2]) == (1, 2, 3)


def test_bytes_source():
    data = _png(Image.new("RGB", (4, 3), (9, 8, 7)))
    img = load_image(data)
    assert (img.name, img.path) == ("image", None) and img.rgb.shape == (3, 4, 3)
    assert load_image(data, name="clipboard").name == "clipboard"


def test_animated_gif_gives_first_frame_and_notice(tmp_path):
    red = Image.new("RGB", (4, 4), (255, 0, 0))
    blue = Image.new("RGB", (4, 4), (0, 0, 255))
    p = tmp_path / "anim.gif"
    red.save(p, save_all=True, append_images=[blue], duration=100, loop=0)
    img = load_image(p)
    assert (img.rgb == np.array([255, 0, 0], np.uint8)).all()
    assert img.notices == ["animated GIF: showing frame 1 of 2"]


# --- errors ---------------------------------------------------------------------------------


def _load_error(source) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(source)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_missing_path(tmp_path):
    p = tmp_path / "nope.jpg"
    assert _load_error(p) == f"{p} not found."


def test_directory(tmp_path):
    assert "is a folder" in _load_error(tmp_path)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    assert _load_error(p) == f"{p} is empty."


@pytest.mark.parametrize("filename", ["notes.txt", "fake.png"])
def test_text_file_is_not_an_image(tmp_path, filename):
    p = tmp_path / filename
    p.write_text("just some text, not pixels\n")
    ext = p.suffix
    assert _load_error(p) == f"{p} is not an image Pillow can read ({ext})."


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, fmt):
    arr = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    data = buf.getvalue()
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(data[: len(data) // 2])
    msg = _load_error(p)
    assert msg.startswith(str(p)) and "truncated" in msg


def test_huge_header_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header(100_000, 100_000))
    assert p.stat().st_size < 200
    msg = _load_error(p)
    assert msg.startswith(str(p)) and "too large" in msg


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_own_pixel_limit_below_pillows_error_threshold(tmp_path):
    # 12000 x 9000 = 108 MP: only a warning for Pillow, but above MAX_PIXELS.
    assert 12_000 * 9_000 > MAX_PIXELS
    p = tmp_path / "big.png"
    p.write_bytes(_png_header(12_000, 9_000))
    assert _load_error(p) == f"{p} is too large (12000 x 9000 pixels; the limit is 100 megapixels)."


def test_file_size_cap(tmp_path, monkeypatch):
    p = tmp_path / "large.png"
    p.write_bytes(_png(Image.new("RGB", (8, 8))))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 10)
    assert "too large" in _load_error(p)


# --- find_images ----------------------------------------------------------------------------


def test_find_images_folder_sorted_filtered_non_recursive(tmp_path):
    for name in ["b.PNG", "a.jpg", "C.jpeg", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    assert [p.name for p in find_images([tmp_path])] == ["a.jpg", "b.PNG", "C.jpeg"]


def test_find_images_files_and_folders_in_order_without_duplicates(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "x.png").write_bytes(b"x")
    single = tmp_path / "scan.bmp"
    single.write_bytes(b"x")
    explicit = tmp_path / "odd.dat"  # named explicitly: kept, loading reports the problem
    explicit.write_bytes(b"x")
    found = find_images([str(single), folder, explicit, folder / "x.png"])
    assert found == [single, folder / "x.png", explicit]


def test_find_images_errors(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        find_images([tmp_path / "missing"])
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ImageLoadError) as info:
        find_images([tmp_path])
    assert str(info.value).startswith(f"{tmp_path} contains no images (")
    assert ".png" in str(info.value) and ".jpg" in str(info.value)
    with pytest.raises(ImageLoadError):
        find_images([])


def test_image_extensions():
    assert {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"} <= IMAGE_EXTENSIONS


# --- to_model_input -------------------------------------------------------------------------


def test_non_square_shape_survives_load_model_input_and_display_map(tmp_path):
    arr = np.zeros((30, 50, 3), np.uint8)
    arr[:, 25:] = 255  # right half white
    p = tmp_path / "wide.png"
    p.write_bytes(_png(Image.fromarray(arr)))
    rgb = load_image(p).rgb
    assert rgb.shape == (30, 50, 3)
    x = to_model_input(rgb, (12, 20), 3)
    assert x.shape == (12, 20, 3) and x.dtype == np.float32
    assert x[:, :9].max() == 0.0 and x[:, 11:].min() == 255.0  # left dark, right bright
    d, _ = display_map(np.ones((3, 5), np.float32) + np.arange(5, dtype=np.float32), rgb.shape[:2])
    assert d.shape == (30, 50)


def test_to_model_input_grayscale_channel():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255  # pure red → luma 0.299 * 255 = 76.2
    x = to_model_input(rgb, (2, 3), 1)
    assert x.shape == (2, 3, 1) and x.dtype == np.float32
    assert (x == 76.0).all()


def test_to_model_input_area_when_shrinking():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[0, 0] = 255  # one bright pixel; AREA averages it in (255/64 ≈ 4), LINEAR would miss it
    x = to_model_input(rgb, (1, 1), 3)
    assert x[0, 0, 0] == 4.0


def test_to_model_input_linear_when_enlarging_and_none_keeps_side():
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = 255
    x = to_model_input(rgb, (1, 4), 3)
    # half-pixel centres: sources -0.25→0, 0.25, 0.75, 1.25→1 → 0, 63.75, 191.25, 255
    np.testing.assert_array_equal(x[0, :, 0], [0, 64, 191, 255])
    assert to_model_input(np.zeros((5, 7, 3), np.uint8), (None, None), 3).shape == (5, 7, 3)
    with pytest.raises(ValueError):
        to_model_input(rgb, (2, 2), 2)
