"""TensorFlow SavedModel folders (tf.keras / tf_keras ``model.save("folder")``) in the window:
dropped, through File → Open Model… (its saved_model.pb) and File → Open SavedModel Folder…."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog

from ui_window import drop_paths, shown_window
from gradcam_desktop.ui.dnd import is_model_path, model_location, split_paths

TIMEOUT = 60_000
LAYERS = ["conv_a", "conv_b", "pool", "probabilities"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A tiny tf_keras classifier (32×32×3 → two convolutions → 3 classes, random weights) saved as a
    SavedModel folder: saved_model.pb, keras_metadata.pb, variables/."""
    import tf_keras

    tf_keras.utils.set_random_seed(5)
    inputs = tf_keras.Input((32, 32, 3))
    x = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = tf_keras.layers.Dense(3, activation="softmax", name="probabilities")(x)
    folder = tmp_path_factory.mktemp("savedmodel") / "exported_classifier"
    tf_keras.Model(inputs, outputs).save(str(folder))
    tf_keras.backend.clear_session()
    assert (folder / "saved_model.pb").is_file() and (folder / "keras_metadata.pb").is_file()
    assert (folder / "variables").is_dir()
    return folder


@pytest.fixture
def window(qtbot):
    return shown_window(qtbot, 1280, 800)


@pytest.fixture
def picture(tmp_path) -> Path:
    rng = np.random.default_rng(7)
    path = tmp_path / "picture.png"
    cv2.imwrite(str(path), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    return path


def _drop(window, paths):
    """A real drag-enter + drop of local files on the window."""
    drop = drop_paths(window, paths)
    assert drop.isAccepted()
    return drop


def _loaded(qtbot, window, action) -> dict:
    """Run ``action``; the model info the worker answers with."""
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=TIMEOUT) as blocker:
        action()
    qtbot.waitUntil(lambda: window.model_info() is not None, timeout=TIMEOUT)
    return blocker.args[1]


def _shown(qtbot, window, action, check=None):
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT,
                          check_params_cb=check or (lambda _r: True)) as blocker:
        action()
    return blocker.args[0]


def _click_layer(window, path: str) -> None:
    """A real mouse click on the layer's row."""
    tree = window.ui.layer_tree
    index = tree.model().index_for_path(path)
    assert index.isValid(), path
    tree.scrollTo(index)
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     tree.visualRect(index).center())


# -- what a path opens as (no window) ----------------------------------------------------------
def test_paths_sort_into_a_savedmodel_and_pictures(saved_model, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    assert is_model_path(saved_model) and is_model_path(saved_model / "saved_model.pb")
    assert is_model_path(saved_model / "keras_metadata.pb") and not is_model_path(pictures)
    assert model_location(saved_model / "saved_model.pb") == str(saved_model)
    assert model_location(saved_model / "keras_metadata.pb") == str(saved_model)
    assert model_location(saved_model) == str(saved_model)
    assert split_paths([str(pictures), str(saved_model)]) == (str(saved_model), [str(pictures)])
    assert split_paths([str(saved_model / "saved_model.pb"), "a.png"]) == (str(saved_model), ["a.png"])
    # Every file of the folder dropped at once (a selection in a file manager): the model, no pictures.
    everything = [str(p) for p in sorted(saved_model.iterdir())]
    assert split_paths(everything) == (str(saved_model), [])


# -- (a) a dropped folder ---------------------------------------------------------------------
def test_dropped_savedmodel_folder_opens_as_the_model_and_explains_a_dropped_picture(
        qtbot, window, saved_model, picture):
    info = _loaded(qtbot, window, lambda: _drop(window, [saved_model]))
    assert info.source == str(saved_model) and info.display_name == saved_model.name
    assert window.ui.strip.count() == 0  # a model, not a folder of pictures
    tree = window.ui.layer_tree
    paths = [path for path, _eligible in tree.layer_model().all_paths()]
    assert all(name in paths for name in LAYERS), paths
    assert tree.current_path() == "conv_b"  # the last layer with a grid
    assert window.windowTitle().startswith(saved_model.name)
    assert saved_model.name in window.ui.layers_dock.windowTitle()
    result = _shown(qtbot, window, lambda: _drop(window, [picture]))
    assert result.model == str(saved_model) and Path(result.image) == picture
    assert result.layer == "conv_b" and result.raw.shape == (32, 32) and np.isfinite(result.raw).all()
    assert window.ui.view.has_image() and window.shown_result() is result
    # A real click on another layer's row: its map.
    result = _shown(qtbot, window, lambda: _click_layer(window, "conv_a"))
    assert result.layer == "conv_a" and tree.current_path() == "conv_a"
    assert window.settings.recent_models()[0] == str(saved_model)
    assert window.acts.recent_menu.actions()[0].text() == saved_model.name


def test_dropping_saved_model_pb_opens_its_folder(qtbot, window, saved_model):
    info = _loaded(qtbot, window, lambda: _drop(window, [saved_model / "saved_model.pb"]))
    assert info.source == str(saved_model) and info.display_name == saved_model.name
    assert window.ui.strip.count() == 0


# -- (b) the File menu ------------------------------------------------------------------------
def test_open_model_dialog_takes_a_savedmodel_through_its_saved_model_pb(qtbot, window, saved_model, monkeypatch):
    asked = []

    def choose(parent, caption, folder, filters, *rest, **kw):
        asked.append((caption, filters))
        return str(saved_model / "saved_model.pb"), filters.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getOpenFileName", choose)
    info = _loaded(qtbot, window, window.acts.open_model.trigger)
    caption, filters = asked[0]
    first = filters.split(";;")[0]
    assert "saved_model.pb" in first and "*.keras" in first and "*.h5" in first  # one filter for both kinds
    assert "SavedModel" in caption
    assert info.source == str(saved_model) and window.model_info().display_name == saved_model.name
    assert window.settings.folder("models") == str(saved_model.parent)  # the next dialog starts beside it


def test_open_savedmodel_folder_action_uses_a_directory_dialog(qtbot, window, saved_model, monkeypatch, tmp_path):
    assert window.acts.open_savedmodel in window.menuBar().actions()[0].menu().actions()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(saved_model))
    info = _loaded(qtbot, window, window.acts.open_savedmodel.trigger)
    assert info.source == str(saved_model)
    assert [p for p, _e in window.ui.layer_tree.layer_model().all_paths()][-1] == "probabilities"
    # A folder that is no SavedModel: one line that says what to choose, the model stays.
    plain = tmp_path / "not_a_model"
    plain.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(plain))
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT) as blocker:
        window.acts.open_savedmodel.trigger()
    assert "SavedModel" in blocker.args[0] and "\n" not in blocker.args[0]
    assert window.model_info().source == str(saved_model)
    # Cancelled: nothing happens.
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")
    with qtbot.assertNotEmitted(window.worker.modelLoaded, wait=200):
        window.acts.open_savedmodel.trigger()


# -- (c) a folder without saved_model.pb ------------------------------------------------------
def test_folder_without_saved_model_pb_still_opens_as_pictures(qtbot, window, saved_model, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"p{i}.png"), np.full((30, 40, 3), 60 * (i + 1), np.uint8))
    shutil.copy(saved_model / "keras_metadata.pb", folder / "notes.pb")  # a .pb alone makes no model
    with qtbot.waitSignal(window.worker.imagesLoaded, timeout=TIMEOUT):
        _drop(window, [folder])
    assert window.ui.strip.count() == 2 and window.model_info() is None
    _loaded(qtbot, window, lambda: _drop(window, [saved_model]))
    result = _shown(qtbot, window, lambda: window.step_image(1), lambda r: Path(r.image).name == "p1.png")
    assert result.model == str(saved_model)
