"""Issue 17, §1: opening another model clears every view of the old model's data at once.

The scenario a new user hit: the demo model with Trust, Triage and Compare open, then another model
(the tiny 4-class model of conftest, whose classes and layers the demo does not have). Right when
the new model is asked for — before any event is processed — no view may show the demo's caption,
map, classes, layers, prediction, trust report, triage rows or matrix, or compare grid; once the
new model is open, the views show its data and the triage says it was cleared and can run again.
A refused model brings the model still open back on screen.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QPushButton
from ui_window import shown_window

from gradcam_desktop.core.demo_data import CLASS_NAMES as DEMO_CLASSES
from gradcam_desktop.core.demo_data import make_sample
from gradcam_desktop.ui.trust.wiring import TITLE

TIMEOUT = 120_000
TINY_CLASSES = ["cat", "dog", "bird", "fish"]  # tests/ui/conftest.py's model_file
SAMPLES = Path(__file__).resolve().parents[2] / "images"


def _labelled(root: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(5)
    for index, name in enumerate(DEMO_CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            rgb, _c, _m = make_sample(rng, 64, index)
            cv2.imwrite(str(root / name / f"{name}_{k}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def demo(qtbot, tmp_path):
    """The demo on triangle.png at 1280×800 with the Trust report shown and a triage run done."""
    w = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
        w.open_model("demo")
        w.open_images([SAMPLES / "triangle.png"])
    with qtbot.waitSignal(w.trust.reportShown, timeout=TIMEOUT):
        w.trust.dock.toggleViewAction().trigger()  # View → Can I trust this map?
    with qtbot.waitSignal(w.worker.jobFinished, timeout=TIMEOUT):
        w.triage.open(_labelled(tmp_path / "labelled"))
    view = w.triage.view
    assert len(view.rows()) == 12 and view.matrix.matrix_model.rowCount() == 4  # the premise
    assert w.ui.caption.caption().endswith("layer last_conv") and w.trust.panel.outcome() is not None
    return w


def _no_old_data(w) -> None:
    """Nothing on screen is the demo's (or any model's) data."""
    ui = w.ui
    assert w.shown_result() is None
    assert ui.caption.caption() == "" and "last_conv" not in ui.caption.text() and "triangle" not in ui.caption.text()
    assert np.array_equal(ui.view.composited(), w.current_image().rgb)  # the picture, no map over it
    assert ui.class_list.model.names() == [] and ui.layer_tree.layer_model().rowCount() == 0
    assert ui.prediction_label.text() == "" and ui.time_label.text() == ""
    assert "Demo" not in w.windowTitle() and ui.layers_dock.windowTitle() == "Layers"
    assert w.trust.panel.outcome() is None and w.trust.dock.windowTitle() == TITLE
    view = w.triage.view
    assert view.rows() == [] and view.proxy.rowCount() == 0 and view.matrix.matrix_model.rowCount() == 0
    assert "Cleared" in view.status.text() and view.rerun_button.isVisible()
    assert ui.compare.context() is None
    assert all(cell.result is None for row in ui.compare.cells() for cell in row)


def test_another_model_clears_every_view_of_the_old_one_at_once(qtbot, demo, model_file):
    w = demo
    w.acts.compare.setChecked(True)
    qtbot.waitUntil(lambda: any(c.result is not None for row in w.ui.compare.cells() for c in row), timeout=TIMEOUT)
    w.acts.compare.setChecked(False)

    shown = []
    w.resultShown.connect(shown.append)
    with qtbot.waitSignal(w.worker.modelLoaded, timeout=TIMEOUT):
        w.open_model(model_file)
        _no_old_data(w)  # at once: before a single event has run
        assert "Opening model tiny.keras" in w.ui.caption.text()
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT)  # the new model's map of the same picture
    result = shown[0]
    assert result.class_name in TINY_CLASSES and result.layer == "backbone/last_conv"
    assert w.ui.caption.caption().startswith(f"Evidence for '{result.class_name}'")
    assert sorted(w.ui.class_list.model.names()) == sorted(TINY_CLASSES)  # by probability
    qtbot.waitUntil(lambda: w.trust.panel.outcome() is not None, timeout=TIMEOUT)  # the new map's report
    assert w.trust.panel.outcome().generation == result.generation
    view = w.triage.view
    assert view.rows() == [] and view.matrix.matrix_model.rowCount() == 0  # still not the demo's


def test_a_refused_model_brings_the_open_one_back(qtbot, demo, lambda_model_file):
    w = demo
    shown = []
    w.resultShown.connect(shown.append)
    with qtbot.waitSignal(w.errorShown, timeout=TIMEOUT):
        w.open_model(lambda_model_file)
        assert w.shown_result() is None and w.ui.class_list.model.names() == []
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT)  # the demo's map again (from its cache: at once)
    assert shown[0].class_name == "triangle" and w.ui.class_list.model.names()
    assert w.ui.caption.caption().endswith("layer last_conv") and "Demo" in w.windowTitle()


def test_run_again_checks_the_same_folder_with_the_new_model(qtbot, demo, tmp_path):
    w = demo
    copy = tmp_path / "shapes_copy.keras"  # the demo under another path: another model to the window
    from gradcam_desktop.core.models import demo_model_path

    shutil.copy(demo_model_path(), copy)
    shutil.copy(demo_model_path().with_name("demo_model.labels.txt"), tmp_path / "shapes_copy.labels.txt")
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
        w.open_model(copy)
    view = w.triage.view
    assert view.rows() == [] and view.rerun_button.isVisible()
    QTest.mouseClick(view.rerun_button, Qt.MouseButton.LeftButton)
    assert w.triage.job() is not None
    qtbot.waitUntil(lambda: w.triage.job() is None, timeout=TIMEOUT)  # (the Trust panel's jobs end too)
    assert len(view.rows()) == 12 and view.matrix.matrix_model.rowCount() == 4
    assert not view.rerun_button.isVisible() and "Done" in view.status.text()


# -- §3: a refusal for custom layers points to File → Load Custom Layers from a Python File… ---------
def test_custom_layer_refusal_offers_load_custom_layers(qtbot, tmp_path, monkeypatch):
    import keras
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from gradcam_desktop.ui import dialogs

    @keras.saving.register_keras_serializable(package="GradcamSwitchForeign")
    class Doubled(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(Doubled(name="doubled")(x))
    path = tmp_path / "custom.keras"
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(path)
    keras.backend.clear_session()

    monkeypatch.setattr(dialogs, "dialogs_enabled", lambda: True)
    asked = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (asked.append(a[1]), ("", ""))[1])
    w = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(w.errorShown, timeout=TIMEOUT) as error:
        w.open_model(path)
    message = error.args[0]
    assert "needs custom Python code" in message  # the core's reason, as the CLI says it …
    assert "File → Load Custom Layers from a Python File…" in message  # … and what to do in the window
    assert "--custom-objects" not in message and "File → Load Custom Layers from a Python File…" in w.ui.status_label.text()
    box = w.findChild(QMessageBox, "customLayersRefusal")
    assert box is not None and box.isVisible() and "Load Custom Layers from a Python File" in box.informativeText()
    button = box.findChild(QPushButton, "loadCustomLayersButton")
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: asked == ["Load Custom Layers from a Python File"])  # the menu entry's own dialog
    assert w.findChild(QMessageBox, "customLayersRefusal") is None  # closed (and deleted) first


def test_a_model_the_engine_could_not_reopen_clears_every_view_that_follows_the_session(qtbot, demo):
    """After an engine death, a model whose file is gone is dropped (engineRestored(None)): the views
    follow the session state, so none keeps showing its data (triage rows, trust report, compare grid)."""
    w = demo
    w.acts.compare.setChecked(True)
    qtbot.waitUntil(lambda: any(c.result is not None for row in w.ui.compare.cells() for c in row), timeout=TIMEOUT)
    changes = []
    w.state.subscribe(changes.append)
    w.worker.engineRestored.emit(None)
    qtbot.waitUntil(lambda: w.model_info() is None, timeout=TIMEOUT)
    assert changes == ["model"] and w.state.layer is None and w.state.kept_class is None
    view = w.triage.view
    assert view.rows() == [] and "Cleared" in view.status.text() and "Demo shapes" in view.status.text()
    assert w.trust.panel.outcome() is None
    assert all(cell.result is None for row in w.ui.compare.cells() for cell in row)
    assert len(w.images()) == 1  # the pictures stay


def test_the_map_shown_carries_the_query_it_answers(demo):
    """One query type from the widgets to the result: the shown map's ``query`` is, unchanged, the query
    the session state made (the picture's top class asked for: None); the result says which class that was."""
    w = demo
    shown = w.shown_result()
    assert shown.query == w.state.query(**w.map_choice())
    assert shown.query.image_key == w.current_image().key and shown.query.layer == "last_conv"
    assert shown.query.class_index is None and shown.class_index == shown.prediction.top[0][0]
