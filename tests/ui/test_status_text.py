"""The window's sentences (ui.status_text), from hand-made results: no window needed."""

from __future__ import annotations

import dataclasses

import numpy as np

from gradcam_desktop.core.types import LayerNode, MapResult, Prediction
from gradcam_desktop.ui import status_text
from gradcam_desktop.session.records import ModelInfo, Picture


def result(**changes) -> MapResult:
    base = MapResult(raw=np.ones((2, 2), np.float32), layer="last_conv", class_index=2, class_name="dog",
                     score=0.931, prediction=Prediction(np.array([0.05, 0.019, 0.931]), [(2, "dog", 0.931),
                                                                                         (0, "cat", 0.05)], "softmax"),
                     seconds=0.0123)
    return base.with_(**changes)


def test_prediction_and_time_labels():
    assert status_text.prediction(result()) == "Predicted: dog (93.1 %)"
    assert status_text.prediction(result(class_name="cat", score=0.05)) == "Predicted: dog (93.1 %)"
    assert status_text.map_time(result()) == "Map: 12 ms"
    assert status_text.map_time(result(seconds=2.34)) == "Map: 2.3 s"
    assert status_text.map_time(result(cached=True)) == "Map: from cache"


def test_map_shown_says_class_probability_layer_and_warnings():
    assert status_text.map_shown("a.png", result()) == "a.png: Evidence for 'dog' (93.1 %) · layer last_conv."
    unlikely = status_text.map_shown("a.png", result(class_name="cat", class_index=0, score=0.019))
    assert unlikely == ("a.png: Evidence for 'cat' (1.9 %) · layer last_conv. "
                        "Unlikely class: the map still shows where the evidence would be.")
    flat = status_text.map_shown("a.png", result(flat=True))
    assert flat.endswith("Flat map: nothing in the picture speaks for this class at this layer.")


def test_image_and_model_lines():
    image = Picture("img1", "a.png", notices=("rotated by EXIF", "reduced to 12 megapixels"))
    assert status_text.image_shown(image, 1, 3) == "a.png (2 of 3) — rotated by EXIF; reduced to 12 megapixels"
    assert status_text.image_shown(Picture("img2", "b.png"), 0, 1) == "b.png (1 of 1)"
    info = ModelInfo(request_id=1, generation=1, source="tiny.keras", display_name="tiny", default_layer="conv",
                     class_names=("a", "b", "c"), input_size=(8, 8), channels=3, preprocess="raw", sha256=None,
                     head="softmax", trusted=False)
    assert status_text.model_ready(info, True) == "Model tiny ready: 3 classes."
    assert status_text.model_ready(info, False).endswith("Open pictures (Ctrl+O) or drop them here.")
    age = dataclasses.replace(info, class_names=("age",), head="value")  # a regression head counts values
    assert status_text.model_ready(age, True) == "Model tiny ready: 1 value."


def test_layer_refused_names_the_reason_a_good_layer_and_what_stays():
    gap = LayerNode("gap", "gap", "GlobalAveragePooling2D", (None, 64), False)
    text = status_text.layer_refused(gap, "last_conv", "conv2")
    assert text == ("No map at layer “gap”: this layer's output has no spatial grid. Pick a layer marked with a "
                    "coloured square, such as “last_conv”. Still showing layer “conv2”.")


def test_progress_hover_and_failures():
    assert status_text.progress_amount("Downloading weights", 3 * 2**20, 12 * 2**20) == "3.0 of 12.0 MB"
    assert status_text.progress_amount("Downloading weights", 3 * 2**20, 0) == "3.0 MB"
    assert status_text.progress_amount("Opening images", 2, 5) == "2 of 5"
    assert status_text.hover_value(3, 4, 0.456) == "Map value at (3, 4): 0.46"
    assert status_text.hover_value(-1, -1, -1.0) == ""
    assert status_text.open_failures([]) is None
    assert status_text.open_failures([("x.png", "x.png is not a picture")]) == ("x.png is not a picture",
                                                                               "Picture not opened")
    many = [(f"{i}.png", "broken") for i in range(8)]
    message, title = status_text.open_failures(many)
    assert title == "Pictures not opened" and message.startswith("8 files could not be opened:\n• 0.png: broken")
    assert message.count("•") == 6 and message.endswith("\n…")
