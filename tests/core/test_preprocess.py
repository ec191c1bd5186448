"""core.preprocess: every mode checked against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_desktop.core.preprocess import MODES, apply

MEAN_BGR = np.array([103.939, 116.779, 123.68])       # Caffe ImageNet mean, BGR order
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])


def _batch() -> np.ndarray:
    # Two 1x2 images, RGB, float32 0..255.
    return np.array([[[[10, 20, 30], [0, 127.5, 255]]],
                     [[[255, 255, 255], [0, 0, 0]]]], dtype=np.float32)


def _hand(mode: str) -> np.ndarray:
    x = _batch().astype(np.float64)
    if mode == "raw":
        return x
    if mode == "unit":
        return x / 255
    if mode == "symmetric":
        return x / 127.5 - 1
    if mode == "caffe":
        return x[..., ::-1] - MEAN_BGR
    if mode == "torch":
        return (x / 255 - TORCH_MEAN) / TORCH_STD
    raise AssertionError(mode)


def test_modes_constant():
    assert MODES == ("auto", "raw", "unit", "symmetric", "caffe", "torch")


def test_single_pixel_by_hand():
    px = np.array([[[[10.0, 20.0, 30.0]]]], dtype=np.float32)
    np.testing.assert_allclose(apply(px, "unit")[0, 0, 0], [10 / 255, 20 / 255, 30 / 255],
                               rtol=1e-6)
    np.testing.assert_allclose(apply(px, "symmetric")[0, 0, 0],
                               [-0.92156863, -0.84313725, -0.76470588], rtol=1e-6)
    # caffe: swap to BGR (30, 20, 10), then subtract (103.939, 116.779, 123.68)
    np.testing.assert_allclose(apply(px, "caffe")[0, 0, 0], [-73.939, -96.779, -113.68],
                               rtol=1e-6)
    # torch: R 10/255 = 0.0392157 -> (0.0392157 - 0.485) / 0.229 = -1.946656
    #        G 20/255 = 0.0784314 -> (0.0784314 - 0.456) / 0.224 = -1.685574
    #        B 30/255 = 0.1176471 -> (0.1176471 - 0.406) / 0.225 = -1.281569
    np.testing.assert_allclose(apply(px, "torch")[0, 0, 0],
                               [-1.946656, -1.685574, -1.281569], rtol=1e-5)


@pytest.mark.parametrize("mode", ["raw", "unit", "symmetric", "caffe", "torch"])
def test_modes_match_hand_formulas(mode):
    original = _batch()
    batch = original.copy()
    out = apply(batch, mode)
    assert out.dtype == np.float32 and out.shape == batch.shape
    np.testing.assert_allclose(out, _hand(mode), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch, original)  # input untouched
    assert not np.shares_memory(out, batch)


def test_range_endpoints():
    x = np.array([[[[0, 0, 0], [255, 255, 255]]]], dtype=np.float32)
    assert apply(x, "unit").min() == 0 and apply(x, "unit").max() == 1
    assert apply(x, "symmetric").min() == -1 and apply(x, "symmetric").max() == 1


@pytest.mark.parametrize("name, same_as", [
    ("MobileNetV2", "symmetric"), ("InceptionV3", "symmetric"), ("Xception", "symmetric"),
    ("ResNet50", "caffe"), ("VGG16", "caffe"), ("DenseNet121", "torch"),
    ("MobileNetV3Small", "raw"), ("MobileNetV3Large", "raw"), ("EfficientNetB0", "raw"),
    ("EfficientNetV2B0", "raw"), ("ConvNeXtTiny", "raw"),
])
def test_zoo_modes(name, same_as):
    batch = _batch()
    out = apply(batch, f"zoo:{name}")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _hand(same_as), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch, _batch())
    assert not np.shares_memory(out, batch)


def test_zoo_mode_case_insensitive_and_unknown():
    np.testing.assert_allclose(apply(_batch(), "zoo:resnet50"), _hand("caffe"), rtol=1e-5)
    with pytest.raises(ValueError, match="Unknown zoo model 'NoNet'"):
        apply(_batch(), "zoo:NoNet")


def test_uint8_and_single_image_input():
    img = np.array([[[0, 255, 51]]], dtype=np.uint8)  # (H, W, C), no batch axis
    np.testing.assert_allclose(apply(img, "unit"), [[[0, 1, 0.2]]], rtol=1e-6)
    assert apply(img, "unit").dtype == np.float32


@pytest.mark.parametrize("mode", ["caffe", "torch", "zoo:ResNet50"])
def test_one_channel_rejected_for_rgb_statistics(mode):
    gray = np.full((1, 2, 2, 1), 100, dtype=np.float32)
    with pytest.raises(ValueError, match="needs 3-channel RGB input; this model takes 1"):
        apply(gray, mode)


@pytest.mark.parametrize("mode, expected", [("raw", 100), ("unit", 100 / 255),
                                            ("symmetric", 100 / 127.5 - 1)])
def test_one_channel_simple_modes(mode, expected):
    gray = np.full((1, 2, 2, 1), 100, dtype=np.float32)
    np.testing.assert_allclose(apply(gray, mode), expected, rtol=1e-6)


def test_unknown_and_auto_modes():
    with pytest.raises(ValueError, match="Unknown preprocessing mode 'imagenet'.*raw, unit, "
                                         "symmetric, caffe, torch, or zoo:<Name>"):
        apply(_batch(), "imagenet")
    with pytest.raises(ValueError, match="'auto' must be resolved"):
        apply(_batch(), "auto")


def test_bad_shape():
    with pytest.raises(ValueError, match="image batch"):
        apply(np.zeros((4, 4), np.float32), "raw")

