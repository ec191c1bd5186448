"""Icons from the plain SVG files in gradcam_desktop.resources/icons (no Qt resource file)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QIcon

from gradcam_desktop.core.assets import asset_path

__all__ = ["ICON_NAMES", "icon", "icon_path"]

ICON_NAMES = ("app", "open-model", "open-images", "export", "copy", "fit", "zoom-1to1", "demo", "zoo", "help")


def icon_path(name: str) -> Path:
    """The SVG file of icon ``name``; FileNotFoundError if there is none (a packaging bug)."""
    # Resources are real files in editable and wheel installs alike, so a path is safe to hand to Qt.
    path = asset_path("icons", f"{name}.svg")
    if not path.is_file():
        raise FileNotFoundError(f"icon {name!r} not found at {path}")
    return path


def icon(name: str) -> QIcon:
    """The icon ``name`` (e.g. "open-model"); Qt renders the SVG crisply at every size."""
    # Not cached in a global: QIcons outliving the QApplication are one way to abort at exit,
    # and QIcon loads the file lazily anyway.
    return QIcon(str(icon_path(name)))
