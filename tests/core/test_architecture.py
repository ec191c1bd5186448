"""The core stays Qt-free, and the resources ship with the installed package."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from importlib import resources

import gradcam_desktop.core


def test_core_imports_no_qt():
    modules = [f"gradcam_desktop.core.{m.name}" for m in pkgutil.iter_modules(gradcam_desktop.core.__path__)]
    assert "gradcam_desktop.core.gradcam" in modules
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import gradcam_desktop.cli, gradcam_desktop.commands\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'PyQt5', 'PyQt6')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_resources_ship_inside_the_package():
    root = resources.files("gradcam_desktop.resources")
    names = root.joinpath("imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    assert root.joinpath("demo_model.keras").is_file()
    labels = root.joinpath("demo_model.labels.txt").read_text(encoding="utf-8").split()
    assert len(labels) >= 3
    # Found through the package, wherever pip put it (not through the working directory).
    assert "site-packages" in str(root) or (root / ".." / "pyproject.toml").is_file()
