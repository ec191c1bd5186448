"""``gradcam-desktop --self-test``: does this install (or bundle) work? One line, in seconds.

It does what a user's first start does — the window, the demo model, a sample picture, one map —
through the window's own scripting surface, and prints ``self-test ok: …`` with the versions and
how long each stage took, or ``self-test failed: <reason>`` with a non-zero exit code. The user's
settings are not touched: QSettings points into a temporary folder for the run.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

#: Longest wait for the whole run; a cold TensorFlow import on a slow disk takes ~30 s.
TIMEOUT_S = 300.0


class SelfTestError(Exception):
    """Why the self-test failed, in one line."""


def _say(line: str, *, error: bool = False) -> None:
    stream = sys.stderr if error else sys.stdout
    if stream is None and os.name == "nt":
        # A windowed app on Windows (the bundle, pythonw) has no streams at all: write to the
        # console it was started from, if any (`start /wait GradCAMDesktop.exe --self-test`).
        import ctypes

        if ctypes.windll.kernel32.AttachConsole(-1):  # type: ignore[attr-defined]  # ATTACH_PARENT_PROCESS
            stream = open("CONOUT$", "w", encoding="utf-8")  # noqa: SIM115 - lives until the process exits
    if stream is not None:
        print(line, file=stream, flush=True)


def _first_line(text: str) -> str:
    # numpy's ImportError, for one, starts with blank lines.
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _choose_platform() -> None:
    """Offscreen when there is no display; a display with missing libraries is a real failure."""
    from gradcam_desktop.__main__ import NO_DISPLAY_MESSAGE, display_problem

    problem = display_problem()
    if problem == NO_DISPLAY_MESSAGE:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif problem:
        raise SelfTestError(problem)


def _check_map(result) -> str:
    raw = result.raw
    if raw is None or raw.size == 0 or not all(math.isfinite(float(v)) for v in (raw.min(), raw.max())):
        raise SelfTestError("the map is empty or not finite")
    if float(raw.max()) <= 0.0:
        raise SelfTestError("the map is zero everywhere")
    return f"{result.class_name} {result.score:.2f}"


def run(timeout_s: float = TIMEOUT_S) -> str:
    """Open the window, the demo model and a sample picture, compute one map; the ``ok`` line.

    Raises SelfTestError with a one-line reason.
    """
    start = time.perf_counter()
    _choose_platform()
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import QCoreApplication, QSettings, QTimer, qVersion
    from PySide6.QtWidgets import QApplication

    from gradcam_desktop.__main__ import sample_image
    from gradcam_desktop.core.types import DEMO
    from gradcam_desktop.ui.applog import APPLICATION, ORGANIZATION
    from gradcam_desktop.ui.main_window import MainWindow

    import_s = time.perf_counter() - start
    QCoreApplication.setOrganizationName(ORGANIZATION)
    QCoreApplication.setApplicationName(APPLICATION)
    with tempfile.TemporaryDirectory(prefix="gradcam-self-test-") as folder:
        # The user's recent models and window layout stay as they were.
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        for kind in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
            QSettings.setPath(kind, QSettings.Scope.UserScope, folder)
        app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "gradcam-desktop"])
        marks: dict[str, float] = {}
        outcome: dict = {}

        def finish(error: str | None = None, result=None) -> None:
            if "error" not in outcome and "result" not in outcome:
                outcome["error" if error else "result"] = error or result
            app.quit()

        t = time.perf_counter()
        window = MainWindow()
        window.show()
        app.processEvents()
        window_s = time.perf_counter() - t
        worker = window.worker
        worker.ready.connect(lambda versions: (marks.setdefault("ready", time.perf_counter()),
                                               "error" in versions and finish(versions["error"])))
        worker.modelLoaded.connect(lambda *_: marks.setdefault("model", time.perf_counter()))
        window.errorShown.connect(lambda message: finish(message))
        window.resultShown.connect(lambda result: finish(result=result))
        QTimer.singleShot(int(timeout_s * 1000), lambda: finish(f"no map after {timeout_s:.0f} s"))
        opened = time.perf_counter()
        window.open_model(DEMO)
        window.open_images([sample_image()])
        app.exec()
        done = time.perf_counter()
        versions = dict(window.versions)
        window.shutdown()
        import shiboken6

        # Destroyed before the QApplication (aborts at exit otherwise on this PySide6 version).
        shiboken6.delete(window)
        del window
    if "error" in outcome:
        raise SelfTestError(_first_line(str(outcome["error"])) or "unknown error")
    shown = _check_map(outcome["result"])
    ready = marks.get("ready", opened)
    model = marks.get("model", ready)
    return (f"self-test ok: Grad-CAM Desktop {versions.get('app')}, Python {versions.get('python')}, "
            f"TensorFlow {versions.get('tensorflow', '?')}, Keras {versions.get('keras', '?')}, "
            f"Qt {qVersion()}/PySide6 {pyside_version}; "
            f"import {import_s:.1f} s, window {window_s:.1f} s, engine {ready - opened:.1f} s, "
            f"model {model - ready:.1f} s, first map {done - model:.1f} s, total {done - start:.1f} s; "
            f"demo map: {shown}")


def main() -> int:
    """Run the self-test, print one line, return the exit code (0 ok, 1 failed)."""
    os.environ.setdefault("GRADCAM_DESKTOP_NO_DIALOGS", "1")  # nobody is there to click OK
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        line = run()
    except SelfTestError as error:
        _say(f"self-test failed: {_first_line(str(error))}", error=True)
        return 1
    except Exception as error:  # noqa: BLE001 - any crash is a failed self-test, reported in one line
        _say(f"self-test failed: {type(error).__name__}: {_first_line(str(error))}", error=True)
        return 1
    _say(line)
    return 0
