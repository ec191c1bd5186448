"""Black-box model files in the window (issue 16): ONNX, TensorFlow Lite and an exported SavedModel,
opened by a drop and from File → Open Model…; the layer tree says the file shows no layers, the
method box offers what the file can run, and a map is shown; a Keras model afterwards gets
everything back."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog

from blackbox_factory import build_exports
from ui_window import click_combo_row, drop_paths, shown_window
from gradcam_desktop.core import cams

TIMEOUT = 120_000


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return build_exports(tmp_path_factory)


@pytest.fixture
def window(qtbot):
    return shown_window(qtbot, 1280, 800)


@pytest.fixture
def picture(tmp_path) -> Path:
    path = tmp_path / "picture.png"
    cv2.imwrite(str(path), np.random.default_rng(3).integers(0, 256, (36, 44, 3), dtype=np.uint8))
    return path


def _path(exports, kind: str) -> Path:
    path = {"tflite": exports.tflite, "onnx": exports.onnx, "savedmodel": exports.savedmodel}[kind]
    return path


def _enabled_methods(window) -> list[str]:
    box = window.ui.method_box
    return [str(box.itemData(row)) for row in range(box.count()) if box.model().item(row).isEnabled()]


@pytest.mark.parametrize("kind", ["tflite", "onnx", "savedmodel"])
def test_a_dropped_black_box_shows_no_layers_offers_its_methods_and_maps(qtbot, window, exports, picture, kind):
    path = _path(exports, kind)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT) as shown:
        assert drop_paths(window, [path, picture]).isAccepted()
    result = shown.args[0]
    info = window.model_info()
    assert info.source == str(path) and info.file_format == kind and not info.shows_layers
    gradients = kind == "savedmodel"
    expected = [m.name for m in cams.METHODS.values() if not m.uses_layer and (gradients or not m.uses_gradients)]
    assert list(info.methods) == expected and _enabled_methods(window) == expected
    # The tree says why it is empty, and which methods work, in words.
    text = window.ui.layer_tree.empty_text()
    assert "shows no layers" in text and "Occlusion" in text and "RISE" in text
    # The map is of the first method offered (the user's Grad-CAM cannot run here), at the input's pixels.
    assert result.method == expected[0] and result.layer == cams.INPUT_LAYER
    assert window.ui.method_box.method() == expected[0]
    assert window.settings.method() == "gradcam"  # a stand-in, not the user's choice: not remembered
    assert "input pixels" in window.ui.caption.text()
    assert result.class_name in ("cat", "dog", "bird", "fish")  # the labels sidecar beside the file


def test_choosing_rise_with_a_click_and_a_keras_model_afterwards(qtbot, window, exports, picture):
    path = exports.onnx
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        drop_paths(window, [path, picture])
    box = window.ui.method_box
    # A greyed row (Grad-CAM) cannot be chosen: the click leaves the method as it was.
    before = box.method()
    click_combo_row(qtbot, box, box.findData("gradcam"))
    assert box.method() == before
    if box.view().isVisible():  # the list stays open on a greyed row: the user closes it
        QTest.keyClick(box.view(), Qt.Key.Key_Escape)
        qtbot.waitUntil(lambda: not box.view().isVisible())
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT) as shown:
        click_combo_row(qtbot, box, box.findData("rise"))
    assert shown.args[0].method == "rise" and shown.args[0].layer == cams.INPUT_LAYER
    assert window.settings.method() == "rise"  # the user's own choice is remembered
    # A Keras model afterwards: every method and its layers; RISE, the user's choice, runs on it too.
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT) as shown:
        window.open_model("demo")
    assert _enabled_methods(window) == list(cams.METHODS)
    assert window.ui.layer_tree.empty_text() == "" and window.ui.layer_tree.layer_model().rowCount() > 0
    assert shown.args[0].method == "rise" and box.method() == "rise"
    assert window.ui.layers_dock.windowTitle() == "Layers of Demo shapes (not used by RISE)"  # no layer is used
    # Grad-CAM chosen with a click: taken at the model's layer.
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT) as shown:
        click_combo_row(qtbot, box, box.findData("gradcam"))
    assert shown.args[0].method == "gradcam" and shown.args[0].layer == window.model_info().default_layer
    assert window.ui.layers_dock.windowTitle() == "Layers of Demo shapes"


@pytest.mark.parametrize("kind", ["tflite", "onnx", "savedmodel"])
def test_each_format_opens_from_the_file_menu(qtbot, window, exports, monkeypatch, kind):
    """File → Open Model… for the files (its first filter lists them), File → Open SavedModel Folder… for
    an exported SavedModel's folder."""
    path = _path(exports, kind)
    asked = []

    def choose(parent, caption, folder, filters, *rest, **kw):
        asked.append(filters)
        return str(path), filters.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getOpenFileName", choose)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(path))
    action = window.acts.open_savedmodel if kind == "savedmodel" else window.acts.open_model
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=TIMEOUT):
        action.trigger()
    if kind != "savedmodel":
        first = asked[0].split(";;")[0]
        assert "*.onnx" in first and "*.tflite" in first and "*.keras" in first
    qtbot.waitUntil(lambda: window.model_info() is not None, timeout=TIMEOUT)
    assert window.model_info().source == str(path) and window.model_info().file_format == kind
    assert "shows no layers" in window.ui.layer_tree.empty_text()


def test_trust_of_a_black_box_says_why_there_is_no_sanity_check(qtbot, window, exports, picture):
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        drop_paths(window, [exports.tflite, picture])
    with qtbot.waitSignal(window.trust.reportShown, timeout=TIMEOUT) as shown:
        QTest.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    outcome = shown.args[0]
    assert outcome.report.sanity == [] and 0.0 <= outcome.report.deletion_auc <= 1.0
    sentence = window.trust.panel.cards["sanity"].sentence.text()
    assert "shows neither layers nor weights" in sentence


def test_the_compare_grid_of_a_black_box_offers_only_its_methods(qtbot, window, exports, picture):
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        drop_paths(window, [exports.tflite, picture])
    window.acts.compare.setChecked(True)
    compare = window.ui.compare
    qtbot.waitUntil(lambda: compare.context() is not None, timeout=TIMEOUT)
    context = compare.context()
    assert context.choices("method") == ("occlusion", "rise")  # not the layer methods it cannot run
    assert context.current.method == "occlusion" and context.current.layer == cams.INPUT_LAYER
    qtbot.waitUntil(lambda: all(cell.result is not None for row in compare.cells() for cell in row), timeout=TIMEOUT)
    assert all(cell.result.method in ("occlusion", "rise") for row in compare.cells() for cell in row)


def test_export_all_of_a_black_box_writes_its_maps_and_table(qtbot, window, exports, picture, tmp_path):
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        drop_paths(window, [exports.savedmodel, picture])
    window.choice.set_method("smoothgrad")  # a gradient method: the exported SavedModel keeps gradients
    run = window.export_all(tmp_path / "out")
    qtbot.waitUntil(run.is_done, timeout=TIMEOUT)
    summary = run.summary()
    assert summary["written"] == 1 and summary["failures"] == [] and not summary["cancelled"]
    rows = (tmp_path / "out" / "results.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and ",smoothgrad," in rows[1] and f",{cams.INPUT_LAYER}," in rows[1]
    assert (tmp_path / "out" / "picture.png").is_file() and (tmp_path / "out" / "picture.json").is_file()
