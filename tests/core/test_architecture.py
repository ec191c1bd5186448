"""The core stays Qt-free, and the resources ship with the installed package."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import gradcam_desktop.core

CORE = Path(gradcam_desktop.core.__file__).parent


def _loaded_after_importing(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """The ``watched`` top-level packages a fresh interpreter has loaded after importing ``modules``."""
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {watched!r}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return ast.literal_eval(result.stdout.strip().splitlines()[-1])


def test_core_imports_no_qt():
    modules = [f"gradcam_desktop.core.{m.name}" for m in pkgutil.iter_modules(gradcam_desktop.core.__path__)]
    assert "gradcam_desktop.core.gradcam" in modules
    modules += ["gradcam_desktop.cli", "gradcam_desktop.commands"]
    assert _loaded_after_importing(modules, ("PySide6", "shiboken6", "PyQt5", "PyQt6")) == []


def test_every_package_ships_in_the_wheel():
    """pyproject lists the packages by name: a new folder missing there is missing from every install."""
    repository = Path(__file__).resolve().parents[2]  # the checkout (CI tests an installed wheel)
    project = tomllib.loads((repository / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(project["tool"]["setuptools"]["packages"]) - {"gradcam_desktop.resources"}
    root = repository / "gradcam_desktop"
    folders = {".".join(("gradcam_desktop", *p.parent.relative_to(root).parts)) for p in root.rglob("__init__.py")}
    assert listed == folders


def test_resources_ship_inside_the_package():
    root = resources.files("gradcam_desktop.resources")
    names = root.joinpath("imagenet_classes.txt").read_text(encoding="utf-8").splitlines()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    assert root.joinpath("demo_model.keras").is_file()
    labels = root.joinpath("demo_model.labels.txt").read_text(encoding="utf-8").split()
    assert len(labels) >= 3
    # Found through the package, wherever pip put it (not through the working directory).
    assert "site-packages" in str(root) or (root / ".." / "pyproject.toml").is_file()


#: The core modules the window's process may import at module level (ui/ and session/): Keras- and
#: TensorFlow-free. Everything else in core (engine, models, layers, zoo, ...) is imported by the
#: engine process only (session.engine.Engine.run), so the window never loads TensorFlow.
UI_MAY_IMPORT = {"annotate", "assets", "batch", "cams", "errors", "files", "images", "object_sidecar", "overlay", "trust",
                 "types", "verdicts"}
#: The one UI module that reaches the engine (through session.host, on its own thread).
ENGINE_OWNER = "worker.py"


def _module_level_core_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:  # top level only, not inside functions
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gradcam_desktop.core"):
            rest = node.module.removeprefix("gradcam_desktop.core").lstrip(".")
            names |= {rest.split(".")[0]} if rest else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[2] for a in node.names if a.name.startswith("gradcam_desktop.core.")}
    return names


def test_ui_and_session_import_only_the_keras_free_core_modules():
    ui, session = CORE.parent / "ui", CORE.parent / "session"
    files = sorted([*ui.rglob("*.py"), *session.glob("*.py")])
    offenders = {p.name: sorted(_module_level_core_imports(p) - UI_MAY_IMPORT) for p in files}
    assert {name: bad for name, bad in offenders.items() if bad} == {}
    assert (ui / ENGINE_OWNER).is_file()


def test_session_imports_no_qt():
    session = CORE.parent / "session"
    modules = sorted(f"gradcam_desktop.session.{p.stem}" for p in session.glob("*.py") if p.stem != "__init__")
    assert "gradcam_desktop.session.engine" in modules
    assert _loaded_after_importing(modules, ("PySide6", "shiboken6", "tensorflow", "keras")) == []


def test_the_core_modules_the_ui_may_import_load_no_tensorflow():
    modules = [f"gradcam_desktop.core.{name}" for name in sorted(UI_MAY_IMPORT)
               if (CORE / f"{name}.py").is_file()]
    assert "gradcam_desktop.core.types" in modules
    assert _loaded_after_importing(modules, ("tensorflow", "keras", "PySide6")) == []


def _sibling_imports(package: Path) -> dict[str, set[str]]:
    """For each module of ``package``: the sibling modules it imports (``from . import x``, ``from .x import …``)."""
    names = {p.stem for p in package.glob("*.py")} - {"__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.update(alias.name for alias in node.names)
        graph[name] = found & names
    return graph


def test_cli_sub_commands_import_no_cycle():
    """commands/: every module may import shared.py (and maps.py trust.py's figures); nothing imports back."""
    graph = _sibling_imports(Path(gradcam_desktop.__file__).parent / "commands")
    assert graph["shared"] == set(), "shared.py is the bottom of the commands package"
    visiting: list[str] = []

    def visit(name: str) -> None:
        assert name not in visiting, f"import cycle: {' → '.join([*visiting, name])}"
        visiting.append(name)
        for imported in graph[name]:
            visit(imported)
        visiting.pop()

    for module in graph:
        visit(module)
