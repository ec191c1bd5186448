"""File → Load Custom Layers from a Python File… (issue 11): confirm, run on the worker, then open."""

from __future__ import annotations

import runpy
import textwrap

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from gradcam_desktop.ui import MainWindow, custom_layers

TIMEOUT = 60_000
LAYERS = textwrap.dedent('''
    import pathlib
    import keras

    pathlib.Path(__file__).with_suffix(".ran").write_text("ran")

    @keras.saving.register_keras_serializable(package="GradcamWindowLayers")
    class Doubled(keras.layers.Layer):
        def call(self, x):
            return x * 2.0
''')


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(w.engine_ready, timeout=TIMEOUT)
    return w


@pytest.fixture
def files(tmp_path):
    import keras

    layers = tmp_path / "window_layers.py"
    layers.write_text(LAYERS, encoding="utf-8")
    doubled = runpy.run_path(str(layers))["Doubled"]
    layers.with_suffix(".ran").unlink()
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(doubled(name="doubled")(x))
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)).save(tmp_path / "custom.keras")
    return layers, tmp_path / "custom.keras"


def test_the_confirmation_names_the_file_and_declining_runs_nothing(window, files, monkeypatch):
    layers, _ = files
    shown = []

    def answer(box):  # the user reads the box and cancels
        shown.append(box.text() + box.informativeText())
        return 0

    monkeypatch.setattr(custom_layers, "dialogs_enabled", lambda: True)
    monkeypatch.setattr(QMessageBox, "exec", answer)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(layers), ""))
    window.acts.custom_layers.trigger()
    assert layers.name in shown[0] and str(layers) in shown[0] and "trust" in shown[0]
    assert not layers.with_suffix(".ran").exists()


def test_without_dialogs_the_file_is_never_run(window, files, monkeypatch):
    layers, _ = files
    monkeypatch.setattr(custom_layers, "dialogs_enabled", lambda: False)
    assert not custom_layers.ask_to_run(window, layers)


def test_a_trusted_file_runs_on_the_worker_and_its_model_opens(window, files, qtbot):
    layers, model = files
    custom_layers.load_custom_layers(window, layers)
    qtbot.waitUntil(lambda: "GradcamWindowLayers>Doubled" in window.ui.status_label.text(), timeout=TIMEOUT)
    assert layers.with_suffix(".ran").exists()
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=TIMEOUT):
        window.open_model(model)
    bad = layers.with_name("broken.py")
    bad.write_text("raise ValueError('no layers here')\n", encoding="utf-8")
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT) as shown:
        custom_layers.load_custom_layers(window, bad)
    assert "no layers here" in shown.args[0]
