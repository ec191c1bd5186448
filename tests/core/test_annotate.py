"""Captions and the burnt-in caption + legend of exported pictures (core.annotate)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gradcam_desktop.core import annotate
from gradcam_desktop.core.batch import OutputStyle, write_result
from gradcam_desktop.core.images import LoadedImage
from gradcam_desktop.core.types import MapResult, Prediction

JET_LOW, JET_HIGH = (0, 0, 128), (128, 0, 0)  # OpenCV's jet at 0 and at 1, in RGB


def result(score: float = 0.004, *, name: str = "star", layer: str = "last_conv", flat: bool = False,
           method: str = "gradcam") -> MapResult:
    probabilities = np.array([0.9, 0.05, 0.046, score])
    return MapResult(raw=np.ones((4, 4), np.float32), layer=layer, class_index=3, class_name=name, score=score,
                     prediction=Prediction(probabilities, [(0, "circle", 0.9)], "softmax"), method=method, flat=flat)


def test_caption_says_class_probability_and_layer():
    assert annotate.caption(result(0.004)) == "Evidence for 'star' (0.4 %) · layer last_conv"
    assert annotate.caption(result(0.9731, name="golden retriever", layer="backbone/conv")) == (
        "Evidence for 'golden retriever' (97.3 %) · layer backbone/conv")
    assert annotate.caption(result(0.0001)).startswith("Evidence for 'star' (<0.1 %)")
    assert annotate.caption(result(0.5, method="scorecam")) == "Score-CAM · Evidence for 'star' (50.0 %) · layer last_conv"
    assert annotate.caption(result(0.5, method="newcam")).startswith("newcam · Evidence for 'star'")


def test_caption_says_which_score_and_that_eigencam_is_no_class():
    versus = result(0.046, method="gradcam++").with_(versus_index=0, versus_name="circle")
    assert annotate.caption(versus) == ("Grad-CAM++ · Evidence for 'star' (4.6 %) rather than 'circle' (90.0 %)"
                                        " · layer last_conv")
    against = result(0.9).with_(counterfactual=True)
    assert annotate.caption(against) == "Evidence against 'star' (90.0 %) · layer last_conv"
    assert annotate.caption(result(0.9, method="eigencam")) == (
        "Eigen-CAM · The layer's main pattern, the same for every class · layer last_conv")


def test_warnings_follow_the_score():
    # Against an unlikely class is a fair question (why is it unlikely?); Eigen-CAM explains no class.
    assert annotate.warning(result(0.01).with_(counterfactual=True)) is None
    assert annotate.warning(result(0.01, method="eigencam")) is None
    assert annotate.warning(result(0.01).with_(versus_index=0, versus_name="circle")).startswith("unlikely class")
    assert "against" in annotate.warning(result(0.9, flat=True).with_(counterfactual=True))
    assert "over the other" in annotate.warning(result(0.9, flat=True).with_(versus_index=0, versus_name="circle"))


def test_warning_below_five_percent_and_for_flat_maps():
    assert annotate.warning(result(0.049)) == "unlikely class: the map still shows where the evidence would be"
    assert annotate.warning(result(0.05)) is None
    assert annotate.warning(result(0.9, flat=True)).startswith("flat map")


def picture(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 3 % 256, yy * 5 % 256, (xx + yy) % 256]).astype(np.uint8)


def bands(out: np.ndarray, pic: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Find the picture inside ``out`` (rows and centred columns); return (top band, bottom band, top, left)."""
    h, w = pic.shape[:2]
    left = (out.shape[1] - w) // 2
    for top in range(out.shape[0] - h + 1):
        if np.array_equal(out[top:top + h, left:left + w], pic):
            return out[:top], out[top + h:], top, left
    raise AssertionError("the picture's pixels are not in the output unchanged")


def dark_columns(band: np.ndarray) -> np.ndarray:
    return np.flatnonzero((band.min(axis=2) < 128).any(axis=0))


def test_burn_keeps_the_picture_and_adds_caption_and_legend():
    pic = picture(300, 480)
    out = annotate.burn(pic, result(0.004), "jet")
    top, bottom, _y, left = bands(out, pic)
    assert out.shape[1] == 480 and left == 0
    assert top.shape[0] > 0 and bottom.shape[0] > 0
    # Two lines of text above (caption and the warning, in orange), one legend row below.
    rows = np.flatnonzero((top.min(axis=2) < 200).any(axis=1))
    assert rows.size and np.diff(rows).max() > 1, "expected two separate lines of text"
    orange = (top[..., 0].astype(int) - top[..., 2].astype(int)) > 80
    assert orange[rows[-1]].any() and not orange[rows[0]].any()
    # The legend's ramp runs from the colormap's 0 to its maximum, left to right.
    middle = bottom[bottom.shape[0] // 2]
    ramp = [x for x in range(bottom.shape[1]) if middle[x].max() - middle[x].min() > 60]
    assert len(ramp) > 200
    assert np.abs(middle[ramp[0]].astype(int) - JET_LOW).sum() <= 12
    assert np.abs(middle[ramp[-1]].astype(int) - JET_HIGH).sum() <= 12


def test_likely_class_has_one_caption_line():
    pic = picture(200, 480)
    top, _bottom, _y, _x = bands(annotate.burn(pic, result(0.7), "viridis"), pic)
    rows = np.flatnonzero((top.min(axis=2) < 200).any(axis=1))
    assert rows.size and np.diff(rows).max() == 1


def test_narrow_picture_is_centred_on_a_canvas_wide_enough_for_its_caption():
    pic = picture(40, 48)
    out = annotate.burn(pic, result(0.7), "jet")
    top, bottom, _y, left = bands(out, pic)
    assert out.shape[1] > 48 and left == (out.shape[1] - 48) // 2
    text = dark_columns(top)
    assert text.min() > 0 and text.max() < out.shape[1] - 1, "caption cut at the edge"
    assert (out[_y:_y + 40, :left] == 255).all()


def test_big_picture_gets_bigger_text():
    small = annotate.burn(picture(100, 400), result(0.7), "jet")
    big = annotate.burn(picture(100, 2000), result(0.7), "jet")
    assert big.shape[0] - 100 > 2 * (small.shape[0] - 100)


def test_caption_or_legend_alone():
    pic = picture(100, 400)
    only_legend = annotate.burn(pic, result(0.7), "jet", with_caption=False)
    top, bottom, _y, _x = bands(only_legend, pic)
    assert top.shape[0] == 0 and bottom.shape[0] > 0
    only_caption = annotate.burn(pic, result(0.7), "jet", with_legend=False)
    top, bottom, _y, _x = bands(only_caption, pic)
    assert top.shape[0] > 0 and bottom.shape[0] == 0
    with pytest.raises(ValueError):
        annotate.burn(pic[..., 0], result(0.7))


def test_decorator_plugs_into_batch_output(tmp_path):
    with pytest.raises(ValueError):
        annotate.decorator("rainbow-unicorn")
    rgb = picture(60, 80)
    image = LoadedImage(rgb=rgb, name="p.png", path=str(tmp_path / "p.png"), notices=[])
    style = OutputStyle(alpha=0.5, colormap="jet", decorate=annotate.decorator("jet"))
    written = write_result(image, result(0.7), tmp_path / "p_out.png", style)
    out = cv2.cvtColor(cv2.imread(str(written["overlay"])), cv2.COLOR_BGR2RGB)
    assert out.shape[0] > 60 and out.shape[1] >= 80
    assert json.loads(written["sidecar"].read_text())["image_size"] == {"height": 60, "width": 80}
