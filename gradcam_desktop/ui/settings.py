"""What the window remembers between runs (QSettings "GradCAMDesktop" / "Grad-CAM Desktop")."""

from __future__ import annotations

import json

from PySide6.QtCore import QByteArray, QSettings

from gradcam_desktop.ui.applog import APPLICATION, ORGANIZATION

MAX_RECENT = 8
DEFAULT_ALPHA = 50
DEFAULT_COLORMAP = "jet"


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
