"""Where the window's log lives, and setting it up.

A ``gui-scripts`` entry point has no console on Windows, so tracebacks would be lost without a
log file: everything unexpected goes to ``<user data folder>/GradCAMDesktop/Grad-CAM Desktop/
gradcam-desktop.log``, and error messages shown to users name that path.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from PySide6.QtCore import QStandardPaths

ORGANIZATION = "GradCAMDesktop"
APPLICATION = "Grad-CAM Desktop"
_LOG_NAME = "gradcam-desktop.log"


def data_dir() -> Path:
    """The user's data folder for this app (not created)."""
    # GenericDataLocation + our names, rather than AppDataLocation, so the path does not depend
    # on whether QCoreApplication's names were set yet (the worker may ask before).
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    if not base:
        base = str(Path.home() / ".local" / "share")
    return Path(base) / ORGANIZATION / APPLICATION


def log_path() -> Path:
    """The log file that error messages point users to."""
    return data_dir() / _LOG_NAME


def setup_logging(level: int = logging.INFO) -> Path | None:
    """Log to the rotating file in the data folder; returns its path (None if not writable)."""
    path = log_path()
    root = logging.getLogger()
    root.setLevel(min(root.level or level, level))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=2,
                                                       encoding="utf-8")
    except OSError:
        logging.basicConfig(level=level)
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root.addHandler(handler)
    return path
