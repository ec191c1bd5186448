"""Render the real window (demo model, a two-object sample, overlay shown) to docs/screenshot.png.

    python tools/screenshot.py [--out docs/screenshot.png] [--size 1280x800] [--model demo]
                               [--mode overlay|heatmap|original|side] [--class NAME] [--dark]
                               [--method NAME] [--versus NAME | --against] [--help-dialog] [--trust]
                               [--triage] [--compare]

Runs offscreen with its own empty settings, so the picture never depends on the machine's saved
window layout. The README shows the result.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GRADCAM_DESKTOP_NO_DIALOGS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


def _sample_images() -> tuple[list, int]:
    """Every sample picture, and the index of a two-object scene to show."""
    from gradcam_desktop.__main__ import sample_image, sample_pictures

    first = sample_image()
    folder = REPO / "images"
    pictures = sample_pictures(folder)
    if not pictures or isinstance(first, tuple):
        return [first], 0
    return [str(p) for p in pictures], [str(p) for p in pictures].index(first)


def _use_dark_palette(app) -> None:
    """What a dark desktop theme hands the app: the window only reads the palette."""
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    palette = QPalette()
    role = QPalette.ColorRole
    for name, colour in ((role.Window, "#2b2b2b"), (role.WindowText, "#e6e6e6"), (role.Base, "#1e1e1e"),
                         (role.AlternateBase, "#262626"), (role.Text, "#e6e6e6"), (role.Button, "#353535"),
                         (role.ButtonText, "#e6e6e6"), (role.Highlight, "#3d7bd9"),
                         (role.HighlightedText, "#ffffff"), (role.ToolTipBase, "#353535"),
                         (role.ToolTipText, "#e6e6e6"), (role.PlaceholderText, "#8a8a8a")):
        palette.setColor(name, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, role.Text, QColor("#6e6e6e"))
    palette.setColor(QPalette.ColorGroup.Disabled, role.WindowText, QColor("#6e6e6e"))
    app.setPalette(palette)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshot.png"))
    parser.add_argument("--size", default="1280x800", help="window size WIDTHxHEIGHT")
    parser.add_argument("--model", default="demo")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the map")
    parser.add_argument("--dark", action="store_true", help="render with a dark palette (as a dark desktop would)")
    parser.add_argument("--mode", default="overlay", help="view mode: overlay, heatmap, original or side")
    parser.add_argument("--class", dest="class_name", help="explain (and keep) this class instead of the top one")
    parser.add_argument("--method", help="CAM method, as in the window's Method box (gradcam, gradcam++, …)")
    parser.add_argument("--versus", help="explain the class rather than this one")
    parser.add_argument("--against", action="store_true", help="explain what speaks against the class")
    parser.add_argument("--trust", action="store_true",
                        help="open the Trust panel (View → Can I Trust This Map?) and wait for its report")
    parser.add_argument("--triage", action="store_true",
                        help="triage a labelled folder of generated pictures and show its worst mistake")
    parser.add_argument("--compare", action="store_true",
                        help="show the compare grid (View → Compare) and wait for its maps")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    settings_dir = tempfile.mkdtemp(prefix="gradcam-screenshot-")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, settings_dir)
    app = QApplication([sys.argv[0]])
    if args.dark:
        _use_dark_palette(app)
    from gradcam_desktop.ui import MainWindow

    window = MainWindow()
    window.resize(width, height)
    window.show()
    images, show = _sample_images()
    shown: list = []
    errors: list[str] = []
    window.resultShown.connect(shown.append)
    window.errorShown.connect(errors.append)
    window.open_model(args.model)
    loop = QEventLoop()
    if args.triage:
        return _triage(app, window, loop, args, Path(settings_dir) / "labelled")
    window.open_images(images)
    window.resultShown.connect(lambda _r: loop.quit())
    window.errorShown.connect(lambda _m: loop.quit())
    QTimer.singleShot(int(args.timeout * 1000), loop.quit)
    loop.exec()
    if show and not errors:
        window.show_image(show)
        loop.exec()
    if args.class_name and not errors:
        names = window.model_info().class_names
        if args.class_name not in names:
            print(f"screenshot: no class {args.class_name!r}; the model has {', '.join(names)}", file=sys.stderr)
            window.close()
            return 1
        window.keep_class(names.index(args.class_name))
        loop.exec()
    if (args.method or args.versus or args.against) and not errors:
        if args.method and not window.choice.set_method(args.method):
            print(f"screenshot: no method {args.method!r}", file=sys.stderr)
            window.close()
            return 1
        if args.versus or args.against:
            names = window.model_info().class_names
            window.ui.score_choice.set_score(names.index(args.versus) if args.versus in names else None, args.against)
            window.choice.changed.emit()
        loop.exec()
    window.set_view_mode(args.mode)
    if args.trust and not errors and shown:
        window.trust.reportShown.connect(lambda _o: loop.quit())
        window.trust.dock.toggleViewAction().trigger()
        if window.trust.panel.outcome() is None:
            loop.exec()
        if window.trust.panel.outcome() is None:
            errors.append("the trust report was not shown in time")
    if args.compare and not errors and shown:
        _compare(app, window)
    if errors or not shown:
        print("screenshot: " + (errors[0] if errors else "no map was shown in time"), file=sys.stderr)
        window.close()
        return 1
    # Let layouts settle and the strip's thumbnails paint before grabbing.
    for _ in range(20):
        app.processEvents()
    window.statusBar().repaint()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(out))
    window.close()
    last = shown[-1]
    print(f"screenshot: {out} ({width}x{height}), showing {Path(last.image).name}: "
          f"{last.class_name} at {last.layer}, {last.method}, {last.score_kind}" if ok else "screenshot: could not save")
    return 0 if ok else 1


def _compare(app, window, timeout: float = 60.0) -> None:
    """--compare: View → Compare as a user opens it, then wait until every cell of the grid has its map."""
    import time

    window.acts.compare.trigger()
    grid = window.ui.compare
    for _ in range(10):  # the grid asks for its maps once it is on screen
        app.processEvents()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and getattr(grid, "pending", lambda: 0)():
        app.processEvents()
        time.sleep(0.05)
    for _ in range(40):
        app.processEvents()
        time.sleep(0.02)


def _labelled_folder(root: Path, per_class: int = 12) -> Path:
    """Class subfolders of generated pictures (core.demo_data), some hard enough to be mistaken."""
    import cv2
    import numpy as np

    from gradcam_desktop.core.demo_data import CLASS_NAMES, make_sample, make_scene

    rng = np.random.default_rng(7)
    for index, name in enumerate(CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            if k % 3 == 2:  # three objects, two of another class: the model may well name that one
                other = (index + 1 + k) % len(CLASS_NAMES)
                rgb, _classes, _masks = make_scene(rng, [index, other, other], (240, 320))
            else:
                rgb, _cls, _mask = make_sample(rng, (240, 320), index)
            cv2.imwrite(str(folder / f"{name}_{k:02d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return root


def _triage(app, window, loop, args, folder: Path) -> int:
    """--triage: the Triage dock over a generated labelled folder, its worst mistake in the main view."""
    from PySide6.QtCore import QTimer

    window.worker.modelLoaded.connect(lambda *_a: loop.quit())
    QTimer.singleShot(int(args.timeout * 1000), loop.quit)
    loop.exec()
    controller = window.triage
    window.worker.jobFinished.connect(lambda *_a: loop.quit())
    controller.open(_labelled_folder(folder))
    loop.exec()
    view = controller.view
    mistakes = [row for row in view.visible_rows() if not row.error and not row.correct]
    if not mistakes:
        print("screenshot: the model made no mistake on the generated folder", file=sys.stderr)
        window.close()
        return 1
    row = mistakes[0]
    window.resultShown.connect(lambda _r: loop.quit())
    controller.show_row(row)
    loop.exec()
    for _ in range(10):
        app.processEvents()
    view.table.selectRow(view.visible_rows().index(row))
    for _ in range(40):  # thumbnails arrive from their thread; layouts settle
        app.processEvents()
        view.thumbnails.wait(200)
    window.statusBar().repaint()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(out))
    window.close()
    print(f"screenshot: {out}, triage of {len(view.rows())} pictures, showing {Path(row.image).name}" if ok
          else "screenshot: could not save")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
