"""Zoo models in the window: the real download path from a local mirror, and offline."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core import zoo
from gradcam_desktop.ui import MainWindow

TIMEOUT = 120_000


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A folder with locally made MobileNetV2 weights under the official file name."""
    from keras.src.legacy.saving import legacy_h5_format

    folder = tmp_path_factory.mktemp("mirror")
    entry = zoo.zoo_entry("MobileNetV2")  # Keras has no checksum for it, so random weights pass
    with h5py.File(folder / entry.weights_file, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, entry.build(weights=None))
    return folder


def _window(qtbot):
    """The engine process inherits the environment when the window starts it: set it before."""
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(w.engine_ready, timeout=TIMEOUT)
    return w


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


@pytest.fixture
def window(qtbot, keras_home, monkeypatch):
    monkeypatch.setenv(zoo.ENV_URL, "http://127.0.0.1:9/")  # nothing listens there: offline
    return _window(qtbot)


def test_offline_zoo_model_gives_a_plain_message_and_the_window_stays_usable(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT) as blocker:
        window.open_model("zoo:MobileNetV2")
    message = blocker.args[0]
    expected = tmp_path / "keras_home" / "models" / zoo.zoo_entry("MobileNetV2").weights_file
    assert "Cannot download" in message and str(expected) in message and "\n" not in message
    assert not expected.exists()
    picture = tmp_path / "p.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(picture)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT) as shown:
        window.open_model("demo")
        window.open_images([picture])
    assert shown.args[0].model == "demo"


def test_zoo_model_downloads_with_progress_and_shows_imagenet_classes(qtbot, keras_home, mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(zoo.ENV_URL, mirror.as_uri() + "/")
    window = _window(qtbot)
    progress = []
    window.worker.progress.connect(lambda text, done, total: progress.append((done, total)))
    picture = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(picture)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT) as shown:
        window.open_model("zoo:MobileNetV2")
        window.open_images([picture])
    result = shown.args[0]
    assert result.model == "zoo:MobileNetV2"
    size = (mirror / zoo.zoo_entry("MobileNetV2").weights_file).stat().st_size
    assert progress and progress[-1] == (size, size)  # the dialog's numbers reached the end
    assert zoo.weights_path("MobileNetV2").stat().st_size == size  # now in the Keras cache
    names = [window.ui.class_list.model.index(row, 0).data() for row in range(window.ui.class_list.model.rowCount())]
    assert len(names) == 1000 and "tench" in names and "toilet tissue" in names
