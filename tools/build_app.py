"""Build the one-folder app bundle: dist/GradCAMDesktop/ (GradCAMDesktop.app on macOS).

    python tools/build_app.py            # reuse build/app-venv if it exists
    python tools/build_app.py --fresh    # a brand-new venv (what a release should use)
    python tools/build_app.py --check    # only run the built bundle's --self-test, size and start time

Steps: a clean venv in build/app-venv with PyInstaller and the app installed from this checkout
(not editable: the bundle gets what a wheel ships), the SVG icon rendered to .png/.ico/.icns,
PyInstaller on packaging/gradcam_desktop.spec, then the bundle's own --self-test in an empty
environment (no Python on PATH), its size and its start time. Takes minutes; not part of .ci/run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
VENV = BUILD / "app-venv"
DIST = ROOT / "dist"
NAME = "GradCAMDesktop"
BUILD_REQUIREMENTS = ["pyinstaller==6.22.*", "pyinstaller-hooks-contrib==2026.9.*"]

# Rendered with the venv's PySide6 (the build script itself needs nothing but the standard library).
RENDER_ICONS = r"""
import sys
from pathlib import Path
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer
from PIL import Image
app = QGuiApplication([])
svg, out = QSvgRenderer(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
image = QImage(1024, 1024, QImage.Format.Format_ARGB32)
image.fill(Qt.GlobalColor.transparent)
painter = QPainter(image)
svg.render(painter)
painter.end()
image.save(str(out / "app.png"))
big = Image.open(out / "app.png")
big.save(out / "app.ico", sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])
big.save(out / "app.icns")
"""


def _venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(*command, cwd: Path = ROOT, **kwargs) -> None:
    shown = ["<script>" if "\n" in str(c) else str(c) for c in command]
    print("+", " ".join(shown), flush=True)
    subprocess.run([str(c) for c in command], check=True, cwd=cwd, **kwargs)


def make_venv(fresh: bool) -> Path:
    """build/app-venv with the build tools and the app (reinstalled from the checkout every time)."""
    if fresh and VENV.exists():
        shutil.rmtree(VENV)
    if not _venv_python().exists():
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    python = _venv_python()
    _run(python, "-m", "pip", "install", "--quiet", *BUILD_REQUIREMENTS)
    _run(python, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", ".")
    _run(python, "-m", "pip", "install", "--quiet", ".")  # the dependencies, if new ones appeared
    return python


def build(python: Path) -> Path:
    """Icons, then PyInstaller; the bundle's folder."""
    icons = BUILD / "icons"
    _run(python, "-c", RENDER_ICONS, ROOT / "resources" / "icons" / "app.svg", icons,
         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    # Run from build/, not the checkout: there the source tree's gradcam_desktop (no resources/
    # inside) would shadow the installed package and the bundle would lack its data files.
    _run(python, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
         "--distpath", DIST, "--workpath", BUILD / "pyinstaller", ROOT / "packaging" / "gradcam_desktop.spec",
         env={**os.environ, "GRADCAM_ICON_DIR": str(icons)}, cwd=BUILD)
    bundle = DIST / NAME
    strip_tensorflow(bundle)
    return bundle


def strip_tensorflow(bundle: Path) -> None:
    """Linux: drop the symbol tables of TensorFlow's own libraries (-220 MB on libtensorflow_cc).

    Only TensorFlow's: strip corrupts libraries that auditwheel patched (numpy.libs, h5py.libs ...).
    """
    tool = shutil.which("strip")
    if not sys.platform.startswith("linux") or tool is None:
        return
    for library in sorted((bundle / "_internal" / "tensorflow").rglob("*.so*")):
        if library.is_file() and not library.is_symlink():
            subprocess.run([tool, "--strip-unneeded", str(library)], check=True)


def folder_size(folder: Path) -> int:
    """Bytes of every file under folder (what a user downloads, unpacked)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def check(bundle: Path) -> int:
    """The bundle's --self-test with no Python environment at all; prints size and start time."""
    exe = bundle / (f"{NAME}.exe" if os.name == "nt" else NAME)
    if not exe.exists():
        print(f"no bundle at {exe}: build it first", file=sys.stderr)
        return 1
    env = {"HOME": str(Path.home()), "PATH": os.pathsep.join(["/usr/bin", "/bin"]) if os.name != "nt" else
           os.environ.get("SystemRoot", r"C:\Windows")}
    if os.environ.get("DISPLAY"):
        env["DISPLAY"] = os.environ["DISPLAY"]
    else:
        env["QT_QPA_PLATFORM"] = "offscreen"
    size = folder_size(bundle)
    print(f"bundle: {bundle} — {size / 1e6:.0f} MB, {sum(1 for _ in bundle.rglob('*'))} files")
    for run in ("first", "second"):  # the first start reads everything from disk, the second from the cache
        start = time.perf_counter()
        result = subprocess.run([str(exe), "--self-test"], env=env, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - start
        said = (result.stdout + result.stderr).splitlines()
        line = next((ln for ln in said if ln.startswith("self-test")), "")
        print(f"{run} run: exit {result.returncode} in {seconds:.1f} s: {line or result.stderr.strip()[-500:]}")
        if result.returncode != 0:
            return result.returncode
    return 0


def main(argv: list[str] | None = None) -> int:
    """Build (unless --check) and check the bundle; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="delete and recreate build/app-venv first")
    parser.add_argument("--check", action="store_true", help="only check an existing bundle")
    args = parser.parse_args(argv)
    if args.check:
        return check(DIST / NAME)
    start = time.perf_counter()
    bundle = build(make_venv(args.fresh))
    print(f"built {bundle} in {(time.perf_counter() - start) / 60:.1f} min")
    return check(bundle)


if __name__ == "__main__":
    sys.exit(main())
