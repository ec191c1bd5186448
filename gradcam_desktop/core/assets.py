"""Where the shipped data lives: ``gradcam_desktop.resources`` (the repository's resources/).

Installed (wheel or editable), resources/ is the package ``gradcam_desktop.resources`` and is
found through importlib.resources. When Python imports the package straight from a source
checkout instead (``python -m gradcam_desktop`` run from the repository root puts the checkout
first on sys.path), that package does not exist there, so we fall back to the resources/
folder beside the package — the same files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """The path of a shipped file, e.g. ``asset_path("icons", "app.svg")``."""
    try:
        root = Path(str(resources.files("gradcam_desktop.resources")))
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[2] / "resources"
    return root.joinpath(*parts)
