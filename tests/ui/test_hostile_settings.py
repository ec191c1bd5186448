"""Hostile settings files: the window starts whatever the settings file holds, and nothing is lost.

The file is written into the test's isolated settings folder (conftest's ``isolated_settings``)
the way QSettings writes it, or as raw bytes for garbage no QSettings would write.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QByteArray, QSettings

from gradcam_desktop.ui import MainWindow
from gradcam_desktop.ui.applog import APPLICATION, ORGANIZATION
from gradcam_desktop.ui.settings import MAX_RECENT, Settings


def _settings_file() -> Path:
    qs = QSettings(ORGANIZATION, APPLICATION)  # naming the file does not create or parse it
    return Path(qs.fileName())


def _write(values: dict) -> Path:
    """Store ``values`` as QSettings does; the writer is gone before the window reads them."""
    qs = QSettings(ORGANIZATION, APPLICATION)
    for key, value in values.items():
        qs.setValue(key, value)
    qs.sync()
    assert qs.status() == QSettings.Status.NoError
    path = Path(qs.fileName())
    del qs
    return path


def _write_bytes(data: bytes) -> Path:
    path = _settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _window(qtbot) -> MainWindow:
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    return w


def _set_aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.broken-*"))


def test_a_million_recent_models_do_not_keep_the_window_from_starting(qtbot):
    paths = [f"/home/user/models/model_{i:07d}.keras" for i in range(1_000_000)]
    path = _write({"models/recent": json.dumps(paths), "view/alpha": 30})
    size = path.stat().st_size
    assert size > 30 * 2**20  # the red team's 36 MB file

    w = _window(qtbot)

    assert w.isVisible()
    assert len(w.acts.recent_menu.actions()) <= MAX_RECENT
    assert len(w.settings.recent_models()) <= MAX_RECENT
    # Far beyond any settings file this app writes: set aside whole (not parsed), kept byte for byte.
    [backup] = _set_aside(path)
    assert backup.stat().st_size == size
    note = w.ui.status_label.text()
    assert note.startswith("Settings reset to defaults") and backup.name in note and "\n" not in note
    assert w.ui.alpha_slider.value() == 50  # defaults, not half of a broken file


def test_a_long_recent_list_is_cut_when_read_and_the_file_is_kept(qtbot):
    paths = [f"/data/run{i}/model.keras" for i in range(200)]  # hand-edited, or grown by another tool
    path = _write({"models/recent": json.dumps(paths), "view/alpha": 30})

    w = _window(qtbot)

    assert [a.toolTip() for a in w.acts.recent_menu.actions()] == paths[:MAX_RECENT]
    assert w.settings.recent_models() == paths[:MAX_RECENT]
    assert w.ui.alpha_slider.value() == 30 and not _set_aside(path) and not w.settings.note
    assert "Settings reset" not in w.ui.status_label.text()


BROKEN_FILES = {
    "binary garbage": lambda: _write_bytes(bytes(range(256)) * 64),
    "UTF-16 text": lambda: _write_bytes("[view]\nalpha=5\n".encode("utf-16")),
    "not UTF-8 text": lambda: _write_bytes("[view]\ncolormap=été\n".encode("latin-1")),
    "unparsable": lambda: _write_bytes(b"[view\nalpha=5\n"),  # a section without its ']': Qt's FormatError
    "a number that is not one": lambda: _write({"view/alpha": "half"}),
    "recent models not a list": lambda: _write({"models/recent": json.dumps({"a": 1})}),
    "recent models as an INI list": lambda: _write({"models/recent": ["a.keras", "b.keras"]}),
    "a recent path of absurd length": lambda: _write({"models/recent": json.dumps(["x" * 20_000])}),
    "a window geometry of absurd size": lambda: _write({"window/geometry": QByteArray(b"\x01" * 200_000)}),
    "a window state that is text": lambda: _write({"window/state": "maximised"}),
    "a folder with a NUL": lambda: _write({"folders/images": "/tmp/a\0b"}),
}


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_a_broken_settings_file_is_set_aside_and_the_window_starts_with_a_note(qtbot, case):
    path = BROKEN_FILES[case]()
    original = path.read_bytes()

    w = _window(qtbot)

    assert w.isVisible()
    [backup] = _set_aside(path)
    assert backup.read_bytes() == original  # nothing lost: the user (or a bug report) still has it
    assert not path.exists()
    note = w.ui.status_label.text()
    assert note.startswith("Settings reset to defaults: the settings file could not be used (")
    assert backup.name in note and "\n" not in note
    assert w.settings.recent_models() == [] and w.settings.alpha() == 50
    # The window saves into a fresh file, which reads back without a note.
    w.ui.alpha_slider.setValue(20)
    w.close()
    again = Settings()
    assert again.note == "" and again.alpha() == 20
    assert _set_aside(path) == [backup]


def test_settings_of_a_newer_version_are_kept(qtbot):
    path = _write({"view/alpha": 40, "view/new_feature": [1, 2, 3], "panels/trust/width": 300})
    w = _window(qtbot)
    assert w.ui.alpha_slider.value() == 40 and not w.settings.note and not _set_aside(path)


def test_a_settings_file_that_cannot_be_set_aside_gives_defaults_and_saves_nothing(monkeypatch):
    path = _write_bytes(b"\0" * 100)

    def refuse(*_args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("gradcam_desktop.ui.settings.os.replace", refuse)
    settings = Settings()
    assert "nor set aside (Permission denied)" in settings.note and "\n" not in settings.note
    assert settings.alpha() == 50 and settings.recent_models() == []
    settings.add_recent_model("demo")
    settings.sync()
    assert path.read_bytes() == b"\0" * 100  # the user's file, untouched
