"""UI test isolation: settings in a temp folder, no thread left running, tiny models on disk."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QStandardPaths
from PySide6.QtWidgets import QApplication

CLASS_NAMES = ["cat", "dog", "bird", "fish"]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, qapp):
    """QSettings (native and INI, user scope) and standard paths point into the test's folder."""
    QStandardPaths.setTestModeEnabled(True)
    folder = str(tmp_path / "settings")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, folder)
    yield folder


@pytest.fixture(autouse=True)
def no_thread_left(qapp):
    """Fail any test that leaves a GradCamWorker running (the 'QThread: Destroyed' crash).

    Autouse and independent of qtbot, so it is torn down after qtbot has closed its widgets.
    """
    yield
    from gradcam_desktop.ui.worker import GradCamWorker

    # Windows that own a worker (MainWindow) close it on close(); found by duck type so that tests
    # without a window do not depend on the window module importing.
    for widget in QApplication.topLevelWidgets():
        if isinstance(getattr(widget, "worker", None), GradCamWorker):
            widget.close()
    running = []
    for obj in gc.get_objects():
        if isinstance(obj, GradCamWorker):
            try:
                if obj.isRunning():
                    running.append(obj)
            except RuntimeError:  # the C++ object is already gone: certainly not running
                pass
    for worker in running:  # clean up so one failure does not cascade into the next tests
        worker.stop()
        worker.wait(10_000)
    assert not running, f"{len(running)} GradCamWorker thread(s) still running after the test"


def _build_model(path: Path) -> Path:
    import keras

    from model_factory import gap_dense_model

    model = gap_dense_model((32, 32, 3), classes=len(CLASS_NAMES), seed=3)
    model.save(path)
    path.with_name(path.stem + ".labels.txt").write_text("\n".join(CLASS_NAMES) + "\n", encoding="utf-8")
    keras.backend.clear_session()
    return path


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """A tiny 32×32 classifier with a nested backbone (last_conv at 8×8) and 4 named classes."""
    return _build_model(tmp_path_factory.mktemp("model") / "tiny.keras")


@pytest.fixture(scope="session")
def lambda_model_file(tmp_path_factory) -> Path:
    """A model with a Lambda layer (refused unless trusted)."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax")(x)
    path = tmp_path_factory.mktemp("lambda") / "with_lambda.keras"
    keras.Model(inputs, outputs).save(path)
    keras.backend.clear_session()
    return path


def write_png(path: Path, height: int = 40, width: int = 48, seed: int = 0) -> Path:
    """A random-noise PNG (non-square, so width/height swaps would show)."""
    import cv2

    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return path


@pytest.fixture
def image_files(tmp_path) -> list[Path]:
    folder = tmp_path / "pictures"
    folder.mkdir()
    return [write_png(folder / "a.png", seed=1), write_png(folder / "b.png", 36, 30, seed=2),
            write_png(folder / "c.png", seed=3)]


# -- the demo model in the real window, and a second engine to check what it shows -----------------
@pytest.fixture(scope="module")
def engine():
    """A second engine on the demo model: the maps and reports the window must show."""
    from gradcam_desktop.core.gradcam import GradCam
    from gradcam_desktop.core.models import load_model

    return GradCam(load_model("demo"))
