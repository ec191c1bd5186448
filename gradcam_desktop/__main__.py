"""``gradcam-desktop`` / ``python -m gradcam_desktop [MODEL] [IMAGES...]``: open the window.

With no arguments the window opens the built-in demo model and a sample picture, so the first
thing a new user sees is a real heat map. Errors are logged to a file in the user's data folder
(a GUI entry point has no console on Windows) and shown in a message box.
"""

from __future__ import annotations

import argparse
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

#: What Qt's xcb platform plugin loads, by the name find_library knows and the Debian package.
XCB_LIBRARIES = (
    ("xcb-cursor", "libxcb-cursor0"),
    ("xcb-icccm", "libxcb-icccm4"),
    ("xcb-keysyms", "libxcb-keysyms1"),
    ("xcb-shape", "libxcb-shape0"),
    ("xcb-image", "libxcb-image0"),
    ("xcb-render-util", "libxcb-render-util0"),
    ("xcb-randr", "libxcb-randr0"),
    ("xcb-xkb", "libxcb-xkb1"),
    ("X11-xcb", "libx11-xcb1"),
    ("xkbcommon-x11", "libxkbcommon-x11-0"),
    ("EGL", "libegl1"),
    ("GL", "libgl1"),
    ("fontconfig", "libfontconfig1"),
    ("dbus-1", "libdbus-1-3"),
)
NO_DISPLAY_MESSAGE = ("Grad-CAM Desktop needs a desktop session (no DISPLAY or WAYLAND_DISPLAY is set). "
                      "Run it from a graphical session, or set QT_QPA_PLATFORM=offscreen for scripts.")

log = logging.getLogger("gradcam_desktop")


def missing_libraries_message(packages: list[str]) -> str:
    """One line naming the Debian/Ubuntu packages to install."""
    return (f"Grad-CAM Desktop needs system libraries that are missing: {', '.join(packages)}. "
            f"Install them with: sudo apt install {' '.join(packages)} (Debian/Ubuntu)")


def _installed_library_finder():
    """find_library for many names with one `ldconfig -p` (find_library runs it once per name)."""
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10,
                                 env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        return ctypes.util.find_library
    sonames = {line.split()[0] for line in listing.splitlines()[1:] if line.strip()}

    def find(name: str) -> str | None:
        prefix = f"lib{name}.so"
        return next((so for so in sonames if so == prefix or so.startswith(prefix + ".")), None)

    return find if sonames else ctypes.util.find_library


def display_problem(environ=os.environ, platform: str = sys.platform, find_library=None) -> str | None:
    """A one-line reason Qt would abort on this Linux session, or None when it should start.

    Qt ≥ 6.5's xcb plugin aborts with a long message that names only libxcb-cursor0 whatever is
    missing; this check runs before QApplication so users get one plain line naming every
    missing package instead.
    """
    if not platform.startswith("linux"):
        return None
    requested = environ.get("QT_QPA_PLATFORM", "").strip()
    if requested and not requested.startswith("xcb"):
        return None  # offscreen, wayland, vnc ...: the user chose; Qt reports its own problems
    has_x = bool(environ.get("DISPLAY"))
    has_wayland = bool(environ.get("WAYLAND_DISPLAY"))
    if not has_x and not has_wayland:
        return NO_DISPLAY_MESSAGE
    uses_xcb = requested.startswith("xcb") or not has_wayland
    if not (uses_xcb and has_x):
        return None
    find = find_library or _installed_library_finder()
    missing = [package for name, package in XCB_LIBRARIES if find(name) is None]
    return missing_libraries_message(missing) if missing else None


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gradcam-desktop",
        description="See where a Keras image classifier looks (Grad-CAM). With no arguments, opens "
                    "the built-in demo model and a sample picture.")
    parser.add_argument("inputs", nargs="*", metavar="MODEL_OR_IMAGE",
                        help='a model (.keras/.h5/.onnx/.tflite file, SavedModel folder, "demo" or "zoo:Name") '
                        'and/or pictures or folders')
    parser.add_argument("--trust-model", action="store_true",
                        help="open a model with Lambda layers (runs code from the file: only for files you trust)")
    checks = parser.add_mutually_exclusive_group()
    checks.add_argument("--self-test", action="store_true",
                        help="open the window, the demo model and a picture, make one map, print one line, exit")
    checks.add_argument("--install-desktop-entry", action="store_true",
                        help="Linux: add Grad-CAM Desktop to the applications menu and open .keras/.h5 files "
                             "with it (for this user, no root)")
    checks.add_argument("--uninstall-desktop-entry", action="store_true",
                        help="Linux: remove what --install-desktop-entry added")
    # Qt's own options (-platform, -style ...) are left for QApplication.
    args, _qt_args = parser.parse_known_args(argv)
    return args


def _split_inputs(inputs: list[str]) -> tuple[str | None, list[str]]:
    """(the model named on the command line — the last one wins — or None, the pictures)."""
    from gradcam_desktop.core.types import ModelSpec
    from gradcam_desktop.ui.dnd import is_model_path

    model = None
    images = []
    for item in inputs:
        if ModelSpec.looks_like_spec(item) or is_model_path(item):
            model = item
        else:
            images.append(item)
    return model, images


def sample_pictures(folder: Path) -> list[Path]:
    """The demo's sample pictures in ``folder`` as images/samples.json lists them (not the README's)."""
    try:
        listed = json.loads((folder / "samples.json").read_text(encoding="utf-8"))["images"]
        return [folder / item["file"] for item in listed if (folder / item["file"]).is_file()]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def sample_image() -> str | tuple[str, bytes]:
    """The first sample picture from images/ next to the package, or a generated one.

    images/ sits in the source tree, not in the wheel; an installed app draws a two-shape scene
    with the same generator that trained the demo model (no extra file to ship).
    """
    folder = Path(__file__).resolve().parent.parent / "images"
    if folder.is_dir():
        candidates = sample_pictures(folder)
        scenes = [p for p in candidates if "scene" in p.name.lower() or "two" in p.name.lower()]
        if scenes or candidates:
            return str((scenes or candidates)[0])
    import cv2
    import numpy as np

    from gradcam_desktop.core import demo_data

    rgb, _classes, _masks = demo_data.make_scene(np.random.default_rng(7), ["circle", "triangle"], (360, 480),
                                                 stretch_jitter=False)
    _ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return ("sample scene.png", png.tobytes())


def _install_excepthook() -> None:
    def hook(kind, value, tb):
        log.critical("uncaught exception", exc_info=(kind, value, tb))
        from gradcam_desktop.ui.applog import log_path
        from gradcam_desktop.ui.dialogs import dialogs_enabled

        if not dialogs_enabled():
            traceback.print_exception(kind, value, tb)
            return
        from PySide6.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is not None:
            QMessageBox.critical(None, "Grad-CAM Desktop",
                                 f"Something went wrong: {value}\n\nDetails are in the log:\n{log_path()}")

    sys.excepthook = hook


def _quit_on_signals(window) -> None:
    """Ctrl+C / SIGTERM close the window cleanly (worker stopped, settings saved)."""
    from PySide6.QtCore import QTimer

    def close(*_args) -> None:
        window.close()

    for name in ("SIGINT", "SIGTERM"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), close)
    # Python runs signal handlers only between bytecodes: a no-op timer gives it the chance
    # while Qt's event loop (C++) is waiting.
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def forward_file_open_events(app, open_paths):
    """macOS hands a double-clicked document to the running app as a QFileOpenEvent, not in argv.

    Returns the event filter (keep a reference to it).
    """
    from PySide6.QtCore import QEvent, QObject

    class FileOpenForwarder(QObject):
        def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.FileOpen and event.file():
                open_paths([event.file()])
                return True
            return False

    forwarder = FileOpenForwarder(app)
    app.installEventFilter(forwarder)
    return forwarder


def main(argv: list[str] | None = None) -> int:
    """Start the window; returns the process exit code."""
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--engine-process"]:  # a frozen app starting its own engine (session.host)
        from gradcam_desktop.session.engine_main import main as engine_main

        return engine_main(arguments[1:])
    args = _parse(arguments)
    if args.self_test:
        from gradcam_desktop import self_test

        return self_test.main()
    if args.install_desktop_entry or args.uninstall_desktop_entry:
        from gradcam_desktop import desktop_entry

        return desktop_entry.main(install_entry=args.install_desktop_entry)
    problem = display_problem()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from gradcam_desktop.ui.applog import APPLICATION, ORGANIZATION, setup_logging

    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    QGuiApplication.setDesktopFileName("gradcam-desktop")
    path = setup_logging()
    log.info("starting Grad-CAM Desktop; log at %s", path)
    _install_excepthook()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from gradcam_desktop.ui.icons import icon
    from gradcam_desktop.ui.main_window import MainWindow

    try:
        app.setWindowIcon(icon("app"))
    except FileNotFoundError:
        log.warning("application icon missing")
    from gradcam_desktop.core.types import DEMO

    window = MainWindow()
    window.show()
    model, images = _split_inputs(args.inputs)
    window.open_model(model or DEMO, trust=args.trust_model)
    window.open_images(images or [sample_image()])
    _quit_on_signals(window)
    forwarder = forward_file_open_events(app, window.open_paths)
    code = app.exec()
    app.removeEventFilter(forwarder)
    window.shutdown()  # normally done by closeEvent; also covers app.quit() without a close
    # Destroy the window (and its QThread) before the QApplication: Qt objects outliving the
    # application are a known cause of aborts at interpreter exit on this PySide6 version.
    import shiboken6

    shiboken6.delete(window)
    del window
    return code


if __name__ == "__main__":
    sys.exit(main())
