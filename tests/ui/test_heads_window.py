"""A value (regression) model and a segmentation model in the real window (issue 20), driven by real
input events.

* value: the class list shows the model's own outputs (Keras' predict on the same input), as values in
  index order, without bars; a click on a row explains that value, "Against" explains −y.
* segmentation: the class list shows each class's share of the output pixels; the explained class's
  predicted mask is outlined on the picture, cell for cell the argmax of the Keras model's output; a box
  dragged with Draw Region (R) gives a map whose region is the box (picture fractions) and whose score is
  the class's pre-softmax scores summed over the box's cells (a linear twin of the model computes them);
  Clear Region goes back to the predicted mask; Mark Object and Draw Region exclude each other; another
  model clears the region.

The pictures are the models' input size (the value model) or exactly twice it (the segmentation model:
each input pixel a 2×2 block, which INTER_AREA shrinks back exactly), so the model input is known
without the app: the picture's pixels / 255 (preprocessing "unit").
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from ui_window import WINDOW_TIMEOUT, click_radio, shown_window

from gradcam_desktop.core.verdicts import quantity

SIDE = 32  # both models' input side
GRID = 32  # the segmentation output's side (H′ = W′)


def _value_model(path):
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="last_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="scores")(x))
    kernel, _bias = model.get_layer("scores").get_weights()
    model.get_layer("scores").set_weights([kernel, np.array([-4.0, 30.0, 12.5], np.float32)])  # not sorted
    model.compile(optimizer="adam", loss="mse")  # the file says: trained as values
    model.save(path)
    return model


def _segmentation_layers(keras, last_activation):
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.UpSampling2D(2, name="up")(x)
    return keras.Model(inputs, keras.layers.Conv2D(3, 1, activation=last_activation, name="seg")(x))


def _segmentation_weights() -> list[np.ndarray]:
    """By hand: feature 0 = how bright a pixel is above 0.6, feature 1 = how dark below 0.3 (mean of RGB,
    input 0..1), each 3×3 neighbourhood's centre only; class 0 'dark' follows feature 1, class 1 'bright'
    feature 0, class 2 'grey' is a constant in between."""
    c1 = np.zeros((3, 3, 3, 4), np.float32)
    c1[1, 1, :, 0], c1[1, 1, :, 1] = 1 / 3, -1 / 3
    b1 = np.array([-0.6, 0.3, 0.0, 0.0], np.float32)
    c2 = np.zeros((3, 3, 4, 4), np.float32)
    c2[1, 1, 0, 0] = c2[1, 1, 1, 1] = 1.0
    c2[:, :, 0, 2] = 0.05  # a little context: a neighbourhood's brightness
    b2 = np.zeros(4, np.float32)
    seg = np.zeros((1, 1, 4, 3), np.float32)
    seg[0, 0, 1, 0] = 12.0
    seg[0, 0, 0, 1] = 12.0
    seg[0, 0, 2, 1] = 3.0
    b3 = np.array([0.0, 0.0, 0.8], np.float32)
    return [c1, b1, c2, b2, seg, b3]


def _small_picture() -> np.ndarray:
    """32×32 RGB: a bright disc and a dark square on mid-grey noise."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(100, 150, (SIDE, SIDE, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    rgb[(yy - 11) ** 2 + (xx - 20) ** 2 < 7 ** 2] = (235, 230, 220)
    rgb[20:29, 3:12] = (20, 25, 30)
    return rgb


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Paths and the Keras models' own answers on their pictures."""
    import keras

    folder = tmp_path_factory.mktemp("heads_window")
    value = _value_model(folder / "scores.keras")
    value_rgb = np.random.default_rng(8).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "face.png"), cv2.cvtColor(value_rgb, cv2.COLOR_RGB2BGR))

    segmenter = _segmentation_layers(keras, "softmax")
    segmenter.set_weights(_segmentation_weights())
    segmenter.save(folder / "segmenter.keras")
    twin = _segmentation_layers(keras, None)  # the same net without its softmax: the pre-softmax scores
    twin.set_weights(segmenter.get_weights())
    small = _small_picture()
    big = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # 64×64: each input pixel a 2×2 block
    cv2.imwrite(str(folder / "shapes.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))

    (folder / "exports").mkdir()

    def run(model, rgb):
        return np.asarray(model.predict(rgb[None].astype(np.float32) / 255.0, verbose=0))[0]

    return {"value": folder / "scores.keras", "value_picture": folder / "face.png", "values": run(value, value_rgb),
            "segmenter": folder / "segmenter.keras", "seg_picture": folder / "shapes.png", "big": big,
            "probabilities": run(segmenter, small), "scores": run(twin, small), "exports": folder / "exports"}


def _open(qtbot, window, model, picture):
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WINDOW_TIMEOUT):
        window.open_model(str(model))
    qtbot.waitUntil(lambda: window.model_info() is not None, timeout=WINDOW_TIMEOUT)
    window.open_images([str(picture)])
    qtbot.waitUntil(lambda: window.shown_result() is not None, timeout=WINDOW_TIMEOUT)


def _rows(window) -> list[tuple[int, str, float, str, object, str]]:
    """Each row of the class list as shown: (class, name, number, text at the right, bar, tooltip)."""
    from gradcam_desktop.ui.explore.class_list import ClassListModel

    proxy = window.ui.class_list.proxy
    rows = []
    for row in range(proxy.rowCount()):
        index = proxy.index(row, 0)
        rows.append((index.data(Qt.ItemDataRole.UserRole), index.data(Qt.ItemDataRole.DisplayRole),
                     index.data(ClassListModel.ProbabilityRole), index.data(ClassListModel.ScoreTextRole),
                     index.data(ClassListModel.BarRole), index.data(Qt.ItemDataRole.ToolTipRole)))
    return rows


def _click_class(window, class_index: int) -> None:
    """A real click on the class list's row of ``class_index``."""
    view, proxy = window.ui.class_list.view, window.ui.class_list.proxy
    row = next(r for r in range(proxy.rowCount()) if proxy.index(r, 0).data(Qt.ItemDataRole.UserRole) == class_index)
    rect = view.visualRect(proxy.index(row, 0))
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def _drag(view, start_scene: QPointF, end_scene: QPointF) -> tuple[QPointF, QPointF, float]:
    """A real press, moves and release on the picture view between two scene points: the scene points the
    pressed and released screen pixels are at, and the zoom, both read before anything moves the view."""
    start, end = view.mapFromScene(start_scene), view.mapFromScene(end_scene)
    pressed, released, zoom = view.mapToScene(start), view.mapToScene(end), view.zoom()
    viewport = view.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 5):
        QTest.mouseMove(viewport, start + (end - start) * (step / 4))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    return pressed, released, zoom


def test_a_value_model_lists_its_values_in_order(qtbot, models):
    window = shown_window(qtbot, 1280, 800)
    _open(qtbot, window, models["value"], models["value_picture"])
    info, values = window.model_info(), models["values"]
    assert info.head == "value" and info.class_names == ("scores 0", "scores 1", "scores 2")
    assert not np.all(np.diff(values) <= 0)  # sorting by value would reorder them: index order is the check

    rows = _rows(window)
    assert [row[0] for row in rows] == [0, 1, 2]  # index order, not by value
    for (_index, name, number, text, bar, tip), expected in zip(rows, values):
        assert abs(number - expected) <= 1e-4 * max(1.0, abs(expected))  # float32 of the same graph
        assert abs(float(text) - expected) <= 0.05 * max(1.0, abs(expected)) and "%" not in text
        assert bar is None and tip == f"{name}: value {text}"
    assert window.shown_result().class_index == 0  # a value head explains its first value by default

    # A real click on 'scores 1': its map; its score is the value itself.
    with qtbot.waitSignal(window.resultShown, timeout=WINDOW_TIMEOUT):
        _click_class(window, 1)
    qtbot.waitUntil(lambda: window.shown_result().class_index == 1, timeout=WINDOW_TIMEOUT)
    result = window.shown_result()
    assert abs(result.target_score - values[1]) <= 1e-3 * max(1.0, abs(values[1]))
    assert [row[0] for row in _rows(window)] == [0, 1, 2]
    assert "value" in window.ui.caption.caption()

    # "Against" reads as what pushes the value down, and explains −y.
    assert window.ui.score_choice.against_button.text() == "Against: what pushes it down"
    click_radio(window, "scoreAgainst")
    qtbot.waitUntil(lambda: window.shown_result().score_kind == "counterfactual", timeout=WINDOW_TIMEOUT)
    assert abs(window.shown_result().target_score + values[1]) <= 1e-3 * max(1.0, abs(values[1]))
    # The Trust panel (Ctrl+T): the curves are the value relative to the blurred picture's, not a probability.
    with qtbot.waitSignal(window.trust.reportShown, timeout=WINDOW_TIMEOUT):
        QTest.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    said = quantity("counterfactual", "scores 1", None, "value")
    panel = window.trust.panel
    assert [panel.plots[key].getAxis("left").labelText for key in ("deletion", "insertion")] == [said.split(" (")[0]] * 2
    assert said.endswith("(1 = the picture's, 0 = its blur's)") and panel.cards["deletion"].numbers.text() == said
    assert panel.numbers()["average_drop"].startswith(f"{said}: ") and "p('" not in panel.numbers()["average_drop"]
    # No mask, no region for a value model.
    tool = window.segmentation
    assert not tool.region_action.isEnabled() and not tool.outline_action.isEnabled() and tool.outline_items() == []


def _expected_cells(region) -> tuple[np.ndarray, np.ndarray]:
    """The output cells whose centres lie in ``region`` (top, left, bottom, right fractions), by hand."""
    top, left, bottom, right = region
    centres = (np.arange(GRID) + 0.5) / GRID
    return (np.flatnonzero((centres >= top) & (centres <= bottom)),
            np.flatnonzero((centres >= left) & (centres <= right)))


def test_a_segmentation_model_outlines_its_mask_and_explains_a_region_drawn(qtbot, models):
    window = shown_window(qtbot, 1280, 800)
    _open(qtbot, window, models["segmenter"], models["seg_picture"])
    info = window.model_info()
    assert info.head == "segmentation" and len(info.class_names) == 3
    argmax = np.argmax(models["probabilities"], axis=-1)
    shares = np.bincount(argmax.ravel(), minlength=3) / argmax.size
    assert np.count_nonzero(shares) == 3  # the hand-made net sees all three: the outline has something to show

    # The class list: each class's share of the pixels, most first, as bars.
    rows = _rows(window)
    assert [row[0] for row in rows] == list(np.argsort(-shares, kind="stable"))
    for index, name, number, text, bar, tip in rows:
        assert number == pytest.approx(shares[index]) and bar == pytest.approx(shares[index])
        assert tip == f"{name}: {text} of the pixels"

    # A real click on 'class 1' (the bright disc): the outline is its predicted mask, cell for cell.
    with qtbot.waitSignal(window.resultShown, timeout=WINDOW_TIMEOUT):
        _click_class(window, 1)
    qtbot.waitUntil(lambda: window.shown_result().class_index == 1, timeout=WINDOW_TIMEOUT)
    tool, view = window.segmentation, window.ui.view
    assert tool.outline_action.isChecked() and tool.outline_action.isEnabled() and tool.region_action.isEnabled()
    items = tool.outline_items()
    assert items and all(item.scene() is view.scene() for item in items)
    path = tool.outline_path()
    covered = np.array([[path.contains(QPointF(j + 0.5, i + 0.5)) for j in range(GRID)] for i in range(GRID)])
    np.testing.assert_array_equal(covered, argmax == 1)
    # Cells → picture pixels: the 64-pixel picture has 2×2 of them per output cell.
    scale = models["big"].shape[0] / GRID
    rows_in, cols_in = np.nonzero(argmax == 1)
    drawn = items[0].sceneTransform().mapRect(path.boundingRect())  # the outline itself, not its pen
    assert (drawn.left(), drawn.top(), drawn.right(), drawn.bottom()) == pytest.approx(
        (cols_in.min() * scale, rows_in.min() * scale, (cols_in.max() + 1) * scale, (rows_in.max() + 1) * scale))
    # The predicted mask's score: class 1's pre-softmax scores summed over its own mask.
    scores = models["scores"][..., 1]
    mask_score = float(scores[argmax == 1].sum())
    assert window.shown_result().target_score == pytest.approx(mask_score, rel=1e-4, abs=1e-3)
    assert window.shown_result().region is None

    # The View menu's toggle hides and shows the outline.
    tool.outline_action.trigger()
    assert tool.outline_items() == []
    tool.outline_action.trigger()
    assert len(tool.outline_items()) == len(items)


def test_a_region_drawn_is_what_the_map_explains(qtbot, models):
    window = shown_window(qtbot, 1280, 800)
    _open(qtbot, window, models["segmenter"], models["seg_picture"])
    tool, view = window.segmentation, window.ui.view
    argmax = np.argmax(models["probabilities"], axis=-1)
    scores = models["scores"][..., 1]
    mask_score = float(scores[argmax == 1].sum())
    with qtbot.waitSignal(window.resultShown, timeout=WINDOW_TIMEOUT):
        _click_class(window, 1)  # a real click on 'class 1' (the bright disc)
    qtbot.waitUntil(lambda: window.shown_result().class_index == 1, timeout=WINDOW_TIMEOUT)
    assert window.kept_class() == 1

    # Draw Region (R), then a real drag on the picture: the map of class 1 summed over the box.
    QTest.keyClick(window, Qt.Key.Key_R)
    assert tool.region_action.isChecked()
    with qtbot.waitSignal(window.resultShown, timeout=WINDOW_TIMEOUT):
        a, b, zoom = _drag(view, QPointF(14.0, 6.0), QPointF(50.0, 34.0))
    qtbot.waitUntil(lambda: window.shown_result().region is not None, timeout=WINDOW_TIMEOUT)
    result = window.shown_result()
    side = float(models["big"].shape[0])
    dragged = (min(a.y(), b.y()) / side, min(a.x(), b.x()) / side, max(a.y(), b.y()) / side, max(a.x(), b.x()) / side)
    assert np.allclose(result.region, dragged, atol=1.0 / zoom / side)  # within one screen pixel
    assert result.region == tool.region() == window.state.region and result.class_index == 1
    rows_box, cols_box = _expected_cells(result.region)
    assert 0 < len(rows_box) < GRID and 0 < len(cols_box) < GRID
    box_score = float(scores[np.ix_(rows_box, cols_box)].sum())
    assert abs(box_score - mask_score) > 1.0  # the region is another score than the mask's
    assert result.target_score == pytest.approx(box_score, rel=1e-4, abs=1e-3)
    assert "over the region drawn" in window.ui.caption.caption()
    assert len(tool.region_items()) == 2  # the box stays drawn, dashed over a dark line
    assert tool.region_items()[1].pen().style() == Qt.PenStyle.DashLine
    assert tool.clear_action.isEnabled()

    # Export All writes the map of the region drawn: its sidecar names the box and the same score.
    run = window.export_all(models["exports"])
    qtbot.waitUntil(run.is_done, timeout=WINDOW_TIMEOUT)
    sidecar = json.loads(next(models["exports"].glob("*.json")).read_text(encoding="utf-8"))
    assert sidecar["region"] == pytest.approx(list(result.region), abs=1e-6) and sidecar["class_index"] == 1
    assert sidecar["explained_score"] == pytest.approx(result.target_score, rel=1e-6, abs=1e-6)

    # Mark Object (M) and Draw Region (R) are one drag tool at a time.
    QTest.keyClick(window, Qt.Key.Key_M)
    assert window.marks.mark_action.isChecked() and not tool.region_action.isChecked()
    QTest.keyClick(window, Qt.Key.Key_R)
    assert tool.region_action.isChecked() and not window.marks.mark_action.isChecked()
    QTest.keyClick(window, Qt.Key.Key_R)
    assert not tool.region_action.isChecked()

    # Clear Region: the predicted mask again.
    with qtbot.waitSignal(window.resultShown, timeout=WINDOW_TIMEOUT):
        tool.clear_action.trigger()
    qtbot.waitUntil(lambda: window.shown_result().region is None, timeout=WINDOW_TIMEOUT)
    assert window.state.region is None and tool.region_items() == [] and not tool.clear_action.isEnabled()
    assert window.shown_result().target_score == pytest.approx(mask_score, rel=1e-4, abs=1e-3)
    assert "over the region" not in window.ui.caption.caption()

    # Another model clears the region.
    assert tool.set_region((0.1, 0.1, 0.6, 0.6)) and window.state.region is not None
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WINDOW_TIMEOUT):
        window.open_model(str(models["value"]))
    qtbot.waitUntil(lambda: window.model_info() is not None and window.model_info().head == "value",
                    timeout=WINDOW_TIMEOUT)
    assert window.state.region is None and tool.region_items() == [] and tool.outline_items() == []
    assert not tool.region_action.isEnabled()
    assert not tool.set_region((0.1, 0.1, 0.6, 0.6))  # one line, no crash: a value model has no region


def test_a_bad_region_is_one_line(qtbot, models):
    window = shown_window(qtbot, 1280, 800)
    _open(qtbot, window, models["segmenter"], models["seg_picture"])
    messages: list[str] = []
    window.errorShown.connect(messages.append)
    assert not window.segmentation.set_region((0.5, 0.5, 0.2, 0.9))
    assert not window.segmentation.set_region(("a", 0, 1, 1))  # type: ignore[arg-type]
    assert len(messages) == 2 and all("\n" not in m for m in messages) and window.state.region is None
