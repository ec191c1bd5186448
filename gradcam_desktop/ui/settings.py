"""What the window remembers between runs (QSettings "GradCAMDesktop" / "Grad-CAM Desktop")."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from gradcam_desktop.core.cams import METHODS
from gradcam_desktop.ui.applog import APPLICATION, ORGANIZATION

MAX_RECENT = 8
DEFAULT_ALPHA = 50
DEFAULT_COLORMAP = "jet"
DEFAULT_METHOD = "gradcam"


class Settings:
    """Typed access to the user's settings; every getter tolerates missing or odd values."""

    def __init__(self) -> None:
        self._qs = QSettings(ORGANIZATION, APPLICATION)

    # Lists are stored as JSON text: QSettings' INI backend hands a one-element list back
    # as a plain string, which would silently turn a recent file into its characters.
    def _list(self, key: str) -> list[str]:
        try:
            value = json.loads(str(self._qs.value(key, "[]")))
        except ValueError:
            return []
        return [str(v) for v in value] if isinstance(value, list) else []

    def recent_models(self) -> list[str]:
        """Most recent first."""
        return self._list("models/recent")

    def add_recent_model(self, spec: str) -> None:
        recent = [spec] + [s for s in self.recent_models() if s != spec]
        self._qs.setValue("models/recent", json.dumps(recent[:MAX_RECENT]))

    def remove_recent_model(self, spec: str) -> None:
        self._qs.setValue("models/recent", json.dumps([s for s in self.recent_models() if s != spec]))

    def folder(self, kind: str) -> str:
        """Last folder used for ``kind`` ("models", "images", "export"); "" if none."""
        return str(self._qs.value(f"folders/{kind}", "") or "")

    def set_folder(self, kind: str, folder: str) -> None:
        self._qs.setValue(f"folders/{kind}", folder)

    def alpha(self) -> int:
        """Overlay opacity in percent (0–100)."""
        try:
            return min(100, max(0, int(self._qs.value("view/alpha", DEFAULT_ALPHA))))
        except (TypeError, ValueError):
            return DEFAULT_ALPHA

    def set_alpha(self, percent: int) -> None:
        self._qs.setValue("view/alpha", int(percent))

    def colormap(self) -> str:
        return str(self._qs.value("view/colormap", DEFAULT_COLORMAP) or DEFAULT_COLORMAP)

    def set_colormap(self, name: str) -> None:
        self._qs.setValue("view/colormap", name)

    def method(self) -> str:
        """The CAM method last chosen (a name of ``core.cams.METHODS``; unknown names fall back to Grad-CAM)."""
        name = str(self._qs.value("view/method", DEFAULT_METHOD) or DEFAULT_METHOD)
        return name if name in METHODS else DEFAULT_METHOD

    def set_method(self, name: str) -> None:
        self._qs.setValue("view/method", name)

    def burn_in(self) -> bool:
        """Whether exported and copied pictures get the caption and colour legend burnt in."""
        return str(self._qs.value("export/burn_in", "false")).lower() in ("true", "1")

    def set_burn_in(self, on: bool) -> None:
        self._qs.setValue("export/burn_in", "true" if on else "false")

    def geometry(self) -> QByteArray | None:
        value = self._qs.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def state(self) -> QByteArray | None:
        value = self._qs.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self._qs.setValue("window/geometry", geometry)
        self._qs.setValue("window/state", state)

    def sync(self) -> None:
        self._qs.sync()

    def restore_window(self, window: Any) -> None:
        """Size, docks, opacity, colours and burn-in of ``window`` (a MainWindow) as last left."""
        geometry, state = self.geometry(), self.state()
        if geometry is None or not window.restoreGeometry(geometry):
            window.resize(1280, 800)
        if state is not None:
            window.restoreState(state)  # dock widths are checked against their content once shown
        window.ui.set_map_controls(self.alpha(), self.colormap())
        window.acts.burn_in.setChecked(self.burn_in())

    def remember_window(self, window: Any) -> None:
        """Save what ``restore_window`` restores (the method is saved when chosen)."""
        self.save_window(window.saveGeometry(), window.saveState())
        self.set_alpha(window.ui.alpha_slider.value())
        self.set_colormap(window.ui.colormap_box.currentText())
        self.sync()
