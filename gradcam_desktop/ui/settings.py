"""What the window remembers between runs (QSettings "GradCAMDesktop" / "Grad-CAM Desktop").

The settings file is input like any other: a hand edit, a crash of another program or a copy from
elsewhere can leave garbage, a value of the wrong type or one of absurd size in it. It is read
defensively: before anything is used, the file's size and bytes and every value we know are
checked; a file that fails is renamed aside (``<name>.broken-<time>``, nothing is lost) and the
window starts with defaults and one line saying so (``Settings.note``). Lists are cut to their
limit when read, not only when written.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from gradcam_desktop.core.cams import METHODS
from gradcam_desktop.ui.applog import APPLICATION, ORGANIZATION

log = logging.getLogger(__name__)

MAX_RECENT = 8
DEFAULT_ALPHA = 50
DEFAULT_COLORMAP = "jet"
DEFAULT_METHOD = "gradcam"
#: Ours is a few KB (eight paths, a few folders, two window blobs): a larger file is not ours to parse.
MAX_FILE_BYTES = 1 << 20
#: A path or a name.
MAX_TEXT_CHARS = 4096
#: The recent list's JSON text: room for more than MAX_RECENT long paths (the extra ones are cut when read).
MAX_LIST_CHARS = 64 * 1024
#: Window geometry and dock state: Qt's blobs are well under 4 KB.
MAX_BLOB_BYTES = 64 * 1024
#: The panels' arrangement the saved dock state belongs to: a state saved by an older arrangement
#: (Trust and Triage stacked across the window, panels that could float) is not restored.
LAYOUT_VERSION = 2
_INI_SUFFIXES = (".conf", ".ini")  # file formats whose bytes must be UTF-8 text (not macOS' binary plists)


# -- what each value may be (None: fine; else why not, in words) -------------------------------------
def _kind(value: Any) -> str:
    """What QSettings handed back, in words (its INI backend gives text, lists, byte arrays, None)."""
    kinds = {str: "text", list: "a list", int: "a number", float: "a number", bool: "true or false",
             QByteArray: "binary data", type(None): "an unreadable value"}
    return next((word for kind, word in kinds.items() if isinstance(value, kind)), "an unknown kind of value")


def _text_problem(value: Any, limit: int = MAX_TEXT_CHARS) -> str | None:
    if not isinstance(value, str):
        return f"is {_kind(value)}, not text"
    if len(value) > limit:
        return f"is {len(value):,} characters long"
    if "\0" in value:
        return "holds a NUL character"
    return None


def _name_problem(value: Any) -> str | None:
    return _text_problem(value, 256)


def _recent_problem(value: Any) -> str | None:
    problem = _text_problem(value, MAX_LIST_CHARS)
    if problem:
        return problem
    try:
        entries = json.loads(value)
    except ValueError:
        return "is not a list"
    if not isinstance(entries, list):
        return "is not a list"
    return next((f"has an entry that {p}" for p in map(_text_problem, entries) if p), None)


def _int_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"is {_kind(value)}, not a number"
    try:
        int(value)
    except ValueError:
        return "is not a whole number"
    return None


def _flag_problem(value: Any) -> str | None:
    if isinstance(value, bool) or (isinstance(value, str) and value.lower() in ("true", "false", "1", "0")):
        return None
    return "is not true or false"


def _blob_problem(value: Any) -> str | None:
    if not isinstance(value, QByteArray):
        return f"is {_kind(value)}, not window data"
    if value.size() > MAX_BLOB_BYTES:
        return f"is {value.size():,} bytes long"
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "models/recent": _recent_problem,
    "view/alpha": _int_problem,
    "view/colormap": _name_problem,
    "view/method": _name_problem,
    "export/burn_in": _flag_problem,
    "window/geometry": _blob_problem,
    "window/state": _blob_problem,
}


def _is_ours(key: str) -> bool:
    return key in _CHECKS or key.startswith("folders/")


def value_problem(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be the setting ``key``, in words; None if it can (or the key is not ours:
    a newer version's keys are kept, not judged)."""
    check = _CHECKS.get(key) or (_text_problem if key.startswith("folders/") else None)
    return check(value) if check is not None else None


def _file_problem(path: Path) -> str | None:
    """Why the settings file cannot be ours, judged from its size and bytes before Qt parses it."""
    try:
        if not path.is_file():
            return None
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return f"it is {size / 2**20:,.1f} MB, where a settings file is a few KB"
        if path.suffix.lower() in _INI_SUFFIXES:
            data = path.read_bytes()
            if b"\0" in data:
                return "it holds binary data"
            data.decode("utf-8")
    except UnicodeDecodeError:
        return "it is not text"
    except OSError as error:
        return f"it cannot be read ({error.strerror or error})"
    return None


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup, n = path.with_name(f"{path.name}.broken-{stamp}"), 2
    while backup.exists():
        backup, n = path.with_name(f"{path.name}.broken-{stamp}-{n}"), n + 1
    return backup


class Settings:
    """Typed access to the user's settings; every getter tolerates missing or odd values.

    ``note``: one line for the user when the settings could not be used as found ("" otherwise).
    """

    def __init__(self) -> None:
        self.note = ""
        self._qs: QSettings | None = self._open()

    def _open(self) -> QSettings | None:
        """The user's settings once checked; a broken file is set aside first (None: defaults, not saved)."""
        qs = QSettings(ORGANIZATION, APPLICATION)
        path = Path(qs.fileName())  # naming the file does not parse it
        problem = _file_problem(path)
        bad: list[str] = []
        if problem is None:
            status = qs.status()
            if status != QSettings.Status.NoError:
                problem = "it cannot be read" if status == QSettings.Status.AccessError else "it cannot be parsed"
            else:
                for key in filter(_is_ours, qs.allKeys()):
                    reason = value_problem(key, qs.value(key))
                    if reason is not None:
                        bad.append(key)
                        problem = problem or f"the setting {key} {reason}"
        if problem is None:
            return qs
        if not path.is_file():  # not a file (the Windows registry): reset just the values that are wrong
            for key in bad:
                qs.remove(key)
            self._tell(f"Some settings were reset to their defaults: {problem}.")
            return qs
        del qs  # Qt must not hold (or write back) the file while it is moved
        backup = _aside_name(path)
        try:
            os.replace(path, backup)
        except OSError as error:
            self._tell(f"The settings file {path} could not be used ({problem}) nor set aside "
                       f"({error.strerror or error}): this session starts with defaults and saves nothing.")
            return None
        self._tell(f"Settings reset to defaults: the settings file could not be used ({problem}); "
                   f"it is kept as {backup.name} beside the new one.")
        log.warning("settings file %s set aside as %s", path, backup)
        return QSettings(ORGANIZATION, APPLICATION)

    def _tell(self, line: str) -> None:
        self.note = line
        log.warning("%s", line)

    def _value(self, key: str, default: Any = None) -> Any:
        """The stored value if it passes its check, else ``default``."""
        if self._qs is None:
            return default
        value = self._qs.value(key, default)
        return default if value is None or value_problem(key, value) else value

    def _set(self, key: str, value: Any) -> None:
        if self._qs is not None:
            self._qs.setValue(key, value)

    # Lists are stored as JSON text: QSettings' INI backend hands a one-element list back
    # as a plain string, which would silently turn a recent file into its characters.
    def _list(self, key: str, limit: int) -> list[str]:
        """At most ``limit`` entries, cut when read: a list grown elsewhere never reaches a menu whole."""
        try:
            value = json.loads(self._value(key, "[]"))
        except ValueError:
            return []
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, str) and v and _text_problem(v) is None][:limit]

    def recent_models(self) -> list[str]:
        """Most recent first, at most ``MAX_RECENT``."""
        return self._list("models/recent", MAX_RECENT)

    def add_recent_model(self, spec: str) -> None:
        recent = [spec] + [s for s in self.recent_models() if s != spec]
        self._set("models/recent", json.dumps(recent[:MAX_RECENT]))

    def remove_recent_model(self, spec: str) -> None:
        self._set("models/recent", json.dumps([s for s in self.recent_models() if s != spec]))

    def folder(self, kind: str) -> str:
        """Last folder used for ``kind`` ("models", "images", "export"); "" if none."""
        return str(self._value(f"folders/{kind}", "") or "")

    def set_folder(self, kind: str, folder: str) -> None:
        self._set(f"folders/{kind}", folder)

    def alpha(self) -> int:
        """Overlay opacity in percent (0–100)."""
        return min(100, max(0, int(self._value("view/alpha", DEFAULT_ALPHA))))

    def set_alpha(self, percent: int) -> None:
        self._set("view/alpha", int(percent))

    def colormap(self) -> str:
        return str(self._value("view/colormap", DEFAULT_COLORMAP) or DEFAULT_COLORMAP)

    def set_colormap(self, name: str) -> None:
        self._set("view/colormap", name)

    def method(self) -> str:
        """The CAM method last chosen (a name of ``core.cams.METHODS``; unknown names fall back to Grad-CAM)."""
        name = str(self._value("view/method", DEFAULT_METHOD) or DEFAULT_METHOD)
        return name if name in METHODS else DEFAULT_METHOD

    def set_method(self, name: str) -> None:
        self._set("view/method", name)

    def burn_in(self) -> bool:
        """Whether exported and copied pictures get the caption and colour legend burnt in."""
        return str(self._value("export/burn_in", "false")).lower() in ("true", "1")

    def set_burn_in(self, on: bool) -> None:
        self._set("export/burn_in", "true" if on else "false")

    def geometry(self) -> QByteArray | None:
        value = self._value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def state(self) -> QByteArray | None:
        value = self._value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        for key, blob in (("window/geometry", geometry), ("window/state", state)):
            if _blob_problem(blob) is None:  # what we could not read back is not written
                self._set(key, blob)

    def sync(self) -> None:
        if self._qs is not None:
            self._qs.sync()

    def restore_window(self, window: Any) -> None:
        """Size, docks, opacity, colours and burn-in of ``window`` (a MainWindow) as last left."""
        geometry, state = self.geometry(), self.state()
        if geometry is None or not window.restoreGeometry(geometry):
            window.resize(1280, 800)
        if state is not None:
            # Dock widths are checked against their content once shown; panels saved floating come
            # back docked (layout.arrange_panels, once every dock exists).
            window.restoreState(state, LAYOUT_VERSION)
        window.ui.set_map_controls(self.alpha(), self.colormap())
        window.acts.burn_in.setChecked(self.burn_in())

    def remember_window(self, window: Any) -> None:
        """Save what ``restore_window`` restores (the method is saved when chosen)."""
        self.save_window(window.saveGeometry(), window.saveState(LAYOUT_VERSION))
        self.set_alpha(window.ui.alpha_slider.value())
        self.set_colormap(window.ui.colormap_box.currentText())
        self.sync()
