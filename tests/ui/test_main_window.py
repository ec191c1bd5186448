"""The main window driven like a user (and a script) would: controls, drops, export, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QListView, QMessageBox, QPushButton, QSlider, QTreeView

from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui import MainWindow
from ui_window import drop_paths

CLASS_NAMES = ["cat", "dog", "bird", "fish"]  # the labels sidecar of conftest's model_file
TIMEOUT = 60_000
USER = Qt.ItemDataRole.UserRole
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(w.engine_ready, timeout=TIMEOUT)
    return w


@pytest.fixture
def loaded(window, qtbot, model_file, image_files):
    """The window with the tiny model and three pictures, first map shown."""
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        window.open_model(model_file)
        window.open_images(image_files)
    return window


def _shown(qtbot, window, action, check=None):
    """Run ``action`` and return the next resultShown payload that passes ``check``."""
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT,
                          check_params_cb=check or (lambda _d: True)) as blocker:
        action()
    return blocker.args[0]


def _error(qtbot, window, action):
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT) as blocker:
        action()
    return blocker.args[0]


def _drop(window, paths):
    return drop_paths(window, paths)


# -- the scripting surface and the window's parts ---------------------------------------------
def test_engine_controls_wait_for_tensorflow(qtbot):
    w = MainWindow()  # the worker starts from the event loop: nothing has run yet
    qtbot.addWidget(w)
    assert not w.acts.open_model.isEnabled() and not w.acts.export.isEnabled()
    assert not w.ui.layer_tree.isEnabled()
    assert w.ui.status_label.text() == "Starting TensorFlow…"
    qtbot.waitUntil(lambda: w.acts.open_model.isEnabled(), timeout=TIMEOUT)
    assert w.versions["tensorflow"] and w.versions["keras"] and w.versions["zoo_names"]


def test_object_names_and_first_result(loaded):
    w = loaded
    for cls, name in ((QTreeView, "layerTree"), (QListView, "classList"), (QSlider, "alphaSlider")):
        assert w.findChild(cls, name) is not None, name
    assert w.findChild(object, "colormapBox") is not None and w.findChild(object, "imageView") is not None
    slider = w.findChild(QSlider, "alphaSlider")
    assert (slider.minimum(), slider.maximum(), slider.value()) == (0, 100, 50)
    assert w.ui.alpha_label.text() == "50 %"
    assert w.ui.layer_tree.current_path() == "backbone/last_conv"
    assert w.ui.view.has_image() and w.ui.strip.count() == 3
    assert w.ui.prediction_label.text().startswith("Predicted: ") and w.ui.time_label.text().startswith("Map: ")
    assert "tiny.keras" in w.settings.recent_models()[0]


def test_layer_tree_selection_changes_the_map_layer(qtbot, qtmodeltester, loaded):
    qtmodeltester.check(loaded.ui.layer_tree.layer_model())  # the real core LayerNodes under the model
    tree = loaded.findChild(QTreeView, "layerTree")
    index = tree.model().index_for_path("backbone/conv2")
    result = _shown(qtbot, loaded, lambda: tree.setCurrentIndex(index))
    assert isinstance(result, MapResult) and result.layer == "backbone/conv2"
    assert result.image == str(loaded.images()[0].path) and result.model.endswith("tiny.keras")
    assert loaded.ui.layer_tree.current_path() == "backbone/conv2"


def test_class_list_selection_changes_the_class(qtbot, qtmodeltester, loaded):
    qtmodeltester.check(loaded.ui.class_list.model)
    view = loaded.findChild(QListView, "classList")
    proxy = view.model()
    assert sorted(proxy.index(r, 0).data(USER) for r in range(proxy.rowCount())) == [0, 1, 2, 3]
    wanted = proxy.index(proxy.rowCount() - 1, 0)  # the least likely class: not the one shown
    cls = wanted.data(USER)
    assert cls != loaded.ui.class_list.current_class()
    result = _shown(qtbot, loaded, lambda: view.setCurrentIndex(wanted))
    assert result.class_index == cls and result.class_name == CLASS_NAMES[cls]


def test_alpha_and_colormap_change_pixels_without_recomputing(qtbot, loaded, monkeypatch):
    asked = []
    real = loaded.worker.explain
    monkeypatch.setattr(loaded.worker, "explain", lambda *a, **k: asked.append(a) or real(*a, **k))
    before = loaded.ui.view.composited()
    with qtbot.assertNotEmitted(loaded.resultShown, wait=300):
        loaded.ui.alpha_slider.setValue(90)
        after_alpha = loaded.ui.view.composited()
        loaded.ui.colormap_box.setCurrentText("viridis")
        after_colormap = loaded.ui.view.composited()
    assert asked == []
    assert loaded.ui.alpha_label.text() == "90 %"
    assert not np.array_equal(before, after_alpha)
    assert not np.array_equal(after_alpha, after_colormap)
    assert loaded.ui.colorbar.colormap() == "viridis"


def test_view_modes_and_zoom(loaded):
    w = loaded
    rgb = w.current_image().rgb
    overlay = w.ui.view.composited()
    w.acts.modes["original"].trigger()
    assert w.ui.view.mode() == "original" and np.array_equal(w.ui.view.composited(), rgb)
    w.acts.modes["heatmap"].trigger()
    heat = w.ui.view.composited()
    assert w.ui.view.mode() == "heatmap" and not np.array_equal(heat, overlay)
    w.acts.modes["side"].trigger()
    assert w.ui.view.composited().shape[1] > 2 * rgb.shape[1]
    w.acts.modes["overlay"].trigger()
    assert np.array_equal(w.ui.view.composited(), overlay)
    w.acts.actual.trigger()
    assert w.ui.view.zoom() == pytest.approx(1.0)
    w.acts.fit.trigger()


def test_navigation_keys_keep_layer_class_alpha_colormap_and_zoom(qtbot, loaded):
    w = loaded
    tree = w.ui.layer_tree
    _shown(qtbot, w, lambda: tree.select_path("backbone/conv2"))
    cls = next(c for c in range(4) if c != w.ui.class_list.current_class())
    _shown(qtbot, w, lambda: w.ui.class_list.select_class(cls))
    w.ui.alpha_slider.setValue(30)
    w.ui.colormap_box.setCurrentText("inferno")
    w.activateWindow()
    w.ui.view.setFocus()
    result = _shown(qtbot, w, lambda: QTest.keyClick(w.ui.view, Qt.Key.Key_Right))
    assert (Path(result.image).name, result.layer, result.class_index) == ("b.png", "backbone/conv2", cls)
    result = _shown(qtbot, w, lambda: QTest.keyClick(w.ui.view, Qt.Key.Key_D))
    assert Path(result.image).name == "c.png"
    result = _shown(qtbot, w, lambda: QTest.keyClick(w.ui.view, Qt.Key.Key_A))
    assert (Path(result.image).name, result.layer, result.class_index) == ("b.png", "backbone/conv2", cls)
    result = _shown(qtbot, w, lambda: QTest.keyClick(w.ui.view, Qt.Key.Key_Left))
    assert Path(result.image).name == "a.png" and w.ui.strip.currentRow() == 0
    assert w.ui.alpha_slider.value() == 30 and w.ui.colormap_box.currentText() == "inferno"
    assert w.ui.view.alpha() == pytest.approx(0.3) and w.ui.view.colormap() == "inferno"


def test_minus_plus_in_the_layer_tree_fold_and_left_right_step_pictures(qtbot, loaded):
    # Issue 17: Left/Right step the pictures even from the tree (it steps layers with Up/Down);
    # -/+ fold and unfold a nested model (tests/ui/test_keys.py has the picture keys).
    tree = loaded.ui.layer_tree
    loaded.activateWindow()
    tree.setFocus()
    _shown(qtbot, loaded, lambda: tree.select_path("backbone"))  # a nested model's own output
    assert tree.isExpanded(tree.model().index_for_path("backbone"))
    with qtbot.assertNotEmitted(loaded.resultShown, wait=200):
        QTest.keyClick(tree, Qt.Key.Key_Minus)
    assert not tree.isExpanded(tree.model().index_for_path("backbone"))
    assert loaded.current_image().name == "a.png"
    QTest.keyClick(tree, Qt.Key.Key_Plus)
    assert tree.isExpanded(tree.model().index_for_path("backbone"))
    result = _shown(qtbot, loaded, lambda: QTest.keyClick(tree, Qt.Key.Key_Right))
    assert (Path(result.image).name, result.layer) == ("b.png", "backbone")


def test_same_size_images_keep_the_zoom(qtbot, loaded):
    w = loaded
    w.ui.view.actual_size()
    w.ui.view.zoom_by(2.0)
    zoom = w.ui.view.zoom()
    _shown(qtbot, w, lambda: w.step_image(2))  # c.png: same size as a.png (b.png differs: refit)
    assert w.ui.view.zoom() == pytest.approx(zoom)


def test_drop_images_and_a_model_file(qtbot, window, model_file, image_files, tmp_path):
    with qtbot.waitSignal(window.worker.imagesLoaded, timeout=TIMEOUT):
        drop = _drop(window, image_files[:2])
    assert drop.isAccepted()
    assert window.ui.strip.count() == 2
    result = _shown(qtbot, window, lambda: _drop(window, [model_file]))
    assert result.model == str(model_file) and Path(result.image).name == "a.png"
    folder = tmp_path / "more"
    folder.mkdir()
    cv2.imwrite(str(folder / "z.png"), np.full((40, 48, 3), 200, np.uint8))
    result = _shown(qtbot, window, lambda: _drop(window, [folder]))
    assert Path(result.image).name == "z.png" and window.ui.strip.count() == 3


def test_export_overlay_writes_image_sized_png_and_sidecar(loaded, tmp_path):
    loaded.ui.alpha_slider.setValue(70)
    loaded.ui.colormap_box.setCurrentText("turbo")
    target = tmp_path / "result.png"
    target.write_bytes(b"old")  # scripts overwrite silently
    assert loaded.export_overlay(target) == target
    image = cv2.imread(str(target))
    assert image.shape[:2] == (40, 48)  # the picture's own size, not the view's
    sidecar = json.loads((tmp_path / "result.json").read_text())
    assert sidecar["method"] == "gradcam" and sidecar["layer"] == "backbone/last_conv"
    assert sidecar["alpha"] == pytest.approx(0.7) and sidecar["colormap"] == "turbo"
    assert sidecar["model"].endswith("tiny.keras") and len(sidecar["model_sha256"]) == 64
    assert sidecar["class_name"] == CLASS_NAMES[sidecar["class_index"]]
    assert sidecar["preprocess"] and sidecar["versions"]["tensorflow"] and sidecar["versions"]["keras"]
    assert sidecar["image"] == str(loaded.images()[0].path) and sidecar["image_size"] == {"height": 40, "width": 48}
    assert sidecar["files"] == {"overlay": "result.png", "raw": "result.npy", "display": "result_map.png"}
    assert sidecar["scale"].startswith("each map is scaled to its own maximum")
    raw = np.load(tmp_path / "result.npy")
    assert raw.dtype == np.float32 and raw.shape == (8, 8)
    assert cv2.imread(str(tmp_path / "result_map.png"), cv2.IMREAD_UNCHANGED).shape == (40, 48)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("result")) == [
        "result.json", "result.npy", "result.png", "result_map.png"]


def test_unwritable_export_shows_an_error_and_writes_nothing(qtbot, loaded, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    message = _error(qtbot, loaded, lambda: loaded.export_overlay(blocker / "out.png"))
    assert "Cannot write" in message
    assert list(tmp_path.glob("**/out*")) == []
    assert message in loaded.ui.status_label.text()


def test_copy_and_paste(qtbot, loaded):
    loaded.copy_overlay()
    copied = QGuiApplication.clipboard().image()
    assert (copied.width(), copied.height()) == (48, 40)
    image = QImage(20, 10, QImage.Format.Format_RGB888)
    image.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(image)
    result = _shown(qtbot, loaded, loaded.paste)
    assert Path(result.image).name == "clipboard" and loaded.current_image().rgb.shape == (10, 20, 3)


# -- bad input ---------------------------------------------------------------------------------
def test_non_image_drop_and_corrupt_image(qtbot, window, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    message = _error(qtbot, window, lambda: _drop(window, [notes]))
    assert "notes.txt" in message
    broken = tmp_path / "broken.png"
    broken.write_bytes(cv2.imencode(".png", np.zeros((20, 20, 3), np.uint8))[1].tobytes()[:40])
    message = _error(qtbot, window, lambda: window.open_images([broken]))
    assert "broken.png" in message
    assert window.ui.strip.count() == 0


def test_folder_without_images(qtbot, window, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no pictures here")
    message = _error(qtbot, window, lambda: _drop(window, [empty]))
    assert "no images" in message


def test_refused_lambda_model_and_trusting_it(qtbot, window, lambda_model_file, image_files, monkeypatch):
    message = _error(qtbot, window, lambda: window.open_model(lambda_model_file))
    assert "Lambda" in message and window.model_info() is None
    # With dialogs on, the refusal offers "Trust this file", which reloads with trust=True.
    monkeypatch.setenv("GRADCAM_DESKTOP_NO_DIALOGS", "0")
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT):
        window.open_model(lambda_model_file)
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert boxes, "no dialog explains the refusal"
    trust = next(b for b in boxes[-1].findChildren(QPushButton) if b.text() == "Trust this file")
    window.open_images(image_files[:1])
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT) as shown:
        trust.click()
    assert shown.args[0].model == str(lambda_model_file)


def test_saved_model_folder_is_refused_with_a_reason(qtbot, window, tmp_path):
    folder = tmp_path / "exported_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    message = _error(qtbot, window, lambda: _drop(window, [folder]))
    assert "SavedModel" in message
    assert window.ui.strip.count() == 0


def test_non_eligible_layer_explains_itself(qtbot, loaded):
    with qtbot.assertNotEmitted(loaded.resultShown, wait=300):
        loaded.ui.layer_tree.select_path("gap")
    text = loaded.ui.status_label.text()
    assert "No map at layer" in text and "backbone/last_conv" in text
    result = _shown(qtbot, loaded, lambda: loaded.ui.layer_tree.select_path("backbone/pool1"))
    assert result.layer == "backbone/pool1"


def test_twenty_quick_changes_show_only_the_last(qtbot, loaded):
    shown = []
    loaded.resultShown.connect(shown.append)
    layers = ["backbone/conv1", "backbone/pool1", "backbone/conv2", "backbone/pool2", "backbone/last_conv"]
    start = time.monotonic()
    for i in range(20):
        if i % 2:
            loaded.ui.class_list.select_class(i % 4)
        else:
            loaded.ui.layer_tree.select_path(layers[(i // 2) % len(layers)])
    assert time.monotonic() - start < 1.0
    last_layer, last_class = layers[9 % len(layers)], 19 % 4
    qtbot.waitUntil(lambda: bool(shown), timeout=TIMEOUT)
    qtbot.wait(500)
    assert [(d.layer, d.class_index) for d in shown] == [(last_layer, last_class)]


def test_close_while_computing_stops_the_thread(qtbot, loaded):
    with qtbot.waitSignal(loaded.worker.busy, timeout=TIMEOUT,
                          check_params_cb=lambda text: text.startswith("Computing")):
        loaded.ui.layer_tree.select_path("backbone/conv1")
    start = time.monotonic()
    loaded.close()
    assert not loaded.worker.isRunning()
    assert time.monotonic() - start < 10


def test_settings_are_remembered(qtbot, loaded):
    loaded.ui.alpha_slider.setValue(25)
    loaded.ui.colormap_box.setCurrentText("magma")
    loaded.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.ui.alpha_slider.value() == 25 and again.ui.colormap_box.currentText() == "magma"
    assert again.acts.recent_menu.actions()[0].text() == "tiny.keras"
    again.close()


# -- processes ---------------------------------------------------------------------------------
def _run(code: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", GRADCAM_DESKTOP_NO_DIALOGS="1",
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=str(REPO))


def test_building_the_window_does_not_import_tensorflow():
    result = _run("""
        import sys
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        import gradcam_desktop.ui
        window = gradcam_desktop.ui.MainWindow()
        window.show()
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print("HEAVY", heavy)
        window.close()
    """)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_closing_mid_computation_exits_cleanly(image_files):
    result = _run("""
        import sys
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from gradcam_desktop.ui import MainWindow

        app = QApplication([])
        window = MainWindow()
        window.show()
        window.open_model("demo")
        window.open_images(sys.argv[1:])
        state = {"maps": 0}

        def on_busy(text):
            # The second map starts: close while it is being computed.
            if text.startswith("Computing") and state["maps"] >= 1:
                window.close()
                app.quit()

        def on_shown(_result):
            state["maps"] += 1
            window.ui.layer_tree.select_path("block1_conv")

        window.worker.busy.connect(on_busy)
        window.resultShown.connect(on_shown)
        QTimer.singleShot(120_000, lambda: (print("TIMEOUT"), app.exit(3)))
        code = app.exec()
        print("RUNNING", window.worker.isRunning(), "MAPS", state["maps"])
        sys.exit(code)
    """, *map(str, image_files))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RUNNING False" in result.stdout and "TIMEOUT" not in result.stdout
    assert "QThread: Destroyed" not in result.stderr


def test_main_module_help_and_display_checks():
    result = subprocess.run([sys.executable, "-m", "gradcam_desktop", "--help"], capture_output=True,
                            text=True, timeout=120, cwd=str(REPO))
    assert result.returncode == 0 and "MODEL_OR_IMAGE" in result.stdout
    from gradcam_desktop.__main__ import NO_DISPLAY_MESSAGE, XCB_LIBRARIES, display_problem

    none = lambda _name: None  # noqa: E731
    found = lambda name: f"lib{name}.so.0"  # noqa: E731
    all_packages = [package for _name, package in XCB_LIBRARIES]
    XCB_CURSOR_MESSAGE = display_problem({"DISPLAY": ":0"}, "linux", none)
    assert XCB_CURSOR_MESSAGE.startswith("Grad-CAM Desktop needs system libraries that are missing: libxcb-cursor0, ")
    assert f"sudo apt install {' '.join(all_packages)}" in XCB_CURSOR_MESSAGE
    no_icccm = lambda name: None if name in ("xcb-icccm", "xcb-keysyms") else found(name)  # noqa: E731
    assert display_problem({"DISPLAY": ":0"}, "linux", no_icccm) == (
        "Grad-CAM Desktop needs system libraries that are missing: libxcb-icccm4, libxcb-keysyms1. "
        "Install them with: sudo apt install libxcb-icccm4 libxcb-keysyms1 (Debian/Ubuntu)")
    assert display_problem({"DISPLAY": ":0"}, "linux", found) is None
    assert display_problem({}, "linux", found) == NO_DISPLAY_MESSAGE
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", none) is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, "linux", none) is None
    assert display_problem({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":0", "WAYLAND_DISPLAY": "w"}, "linux", none) \
        == XCB_CURSOR_MESSAGE
    assert display_problem({}, "win32", none) is None


def test_command_line_inputs_are_one_model_and_pictures(tmp_path):
    from gradcam_desktop.__main__ import _split_inputs

    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    assert _split_inputs(["demo", "a.png", "pics"]) == ("demo", ["a.png", "pics"])
    assert _split_inputs(["zoo:ResNet50", "m.KERAS", "b.jpg"]) == ("m.KERAS", ["b.jpg"])  # the last model wins
    assert _split_inputs([str(saved), "c.png"]) == (str(saved), ["c.png"])  # refused later, with a reason
    assert _split_inputs(["c.png"]) == (None, ["c.png"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the DISPLAY check is for Linux")
def test_missing_display_gives_one_plain_line():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "gradcam_desktop"], capture_output=True, text=True,
                            timeout=120, cwd=str(REPO), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Grad-CAM Desktop needs a desktop session (no DISPLAY or WAYLAND_DISPLAY is set). "
        "Run it from a graphical session, or set QT_QPA_PLATFORM=offscreen for scripts."]


def test_quitting_the_application_without_closing_the_window_stops_the_worker():
    result = _run("""
        import sys
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
        from gradcam_desktop.ui import MainWindow

        app = QApplication([])
        window = MainWindow()
        window.show()
        window.open_model("demo")
        # exit(), unlike quit(), does not close the windows first (no closeEvent).
        window.worker.ready.connect(lambda _versions: QTimer.singleShot(100, lambda: app.exit(0)))
        QTimer.singleShot(120_000, lambda: (print("TIMEOUT"), app.exit(3)))
        code = app.exec()
        print("RUNNING", window.worker.isRunning())
        sys.exit(code)
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RUNNING False" in result.stdout and "TIMEOUT" not in result.stdout
    assert "QThread: Destroyed" not in result.stderr
