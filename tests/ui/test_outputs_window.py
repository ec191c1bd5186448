"""A model with two outputs in the real window (issue 20): the Output row lists them, a real click on
the other one reopens the model through it, and the class list and maps are then that output's."""

from __future__ import annotations

import numpy as np
import pytest
from ui_window import WINDOW_TIMEOUT, click_combo_row, shown_window


@pytest.fixture(scope="module")
def two_heads(tmp_path_factory):
    import keras

    folder = tmp_path_factory.mktemp("two_heads_window")
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, [keras.layers.Dense(3, activation="softmax", name="kind")(pooled),
                                 keras.layers.Dense(1, activation="sigmoid", name="adult")(pooled)])
    path = folder / "two.keras"
    model.save(path)
    (folder / "two.gradcam.json").write_text(
        '{"labels": {"kind": ["cat", "dog", "fox"], "adult": ["young", "adult"]}}', encoding="utf-8")
    picture = folder / "p.png"
    import cv2

    cv2.imwrite(str(picture), np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    return path, picture


def test_switching_output_with_a_click(qtbot, two_heads):
    path, picture = two_heads
    window = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WINDOW_TIMEOUT):
        window.open_model(str(path))
    qtbot.waitUntil(lambda: window.model_info() is not None, timeout=WINDOW_TIMEOUT)
    window.open_images([str(picture)])
    qtbot.waitUntil(lambda: window.shown_result() is not None, timeout=WINDOW_TIMEOUT)
    choice = window.outputs
    assert choice.row.isVisible() and choice.outputs() == ["kind", "adult"]
    assert window.model_info().class_names == ("cat", "dog", "fox") and window.model_info().output == "kind"

    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WINDOW_TIMEOUT):
        click_combo_row(qtbot, choice.box, 1)
    qtbot.waitUntil(lambda: window.model_info() is not None and window.model_info().output == "adult"
                    and window.shown_result() is not None
                    and window.shown_result().generation == window.model_info().generation, timeout=WINDOW_TIMEOUT)
    assert window.model_info().class_names == ("young", "adult") and window.model_info().head == "binary"
    assert sorted(window.ui.class_list.model.names()) == ["adult", "young"] and choice.box.currentText().startswith("adult")
    assert window.shown_result().class_name in ("young", "adult")


def test_a_one_output_model_shows_no_output_row(qtbot):
    from ui_window import demo_window

    window = demo_window(qtbot, 1280, 800)
    assert not window.outputs.row.isVisible()
