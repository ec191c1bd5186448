"""Menus, toolbar actions and the dialog-driven commands behind them, and what paths open as.

Every command ends in one of the window's scripting methods (``open_model``, ``open_images``,
``export_overlay``, ``export_all``), so menus, drag-and-drop and scripts share one code path;
``open_paths`` sorts dropped, pasted or command-line paths into models and pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QBuffer, QIODevice, QMimeData, Qt
from PySide6.QtGui import QAction, QActionGroup, QGuiApplication, QIcon, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu

from gradcam_desktop.core.images import IMAGE_EXTENSIONS
from gradcam_desktop.core.overlay import blend
from gradcam_desktop.ui import dialogs
from gradcam_desktop.ui.export import export_paths, rgb_to_qimage

if TYPE_CHECKING:
    from gradcam_desktop.ui.main_window import MainWindow

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
MODEL_FILTER = "Keras models (*.keras *.h5 *.hdf5);;All files (*)"
IMAGE_FILTER = "Images ({});;All files (*)".format(" ".join(f"*{e}" for e in sorted(IMAGE_EXTENSIONS)))
MODES = (("overlay", "Overlay", "The map laid over the picture"),
         ("heatmap", "Heatmap", "Only the map, without the picture"),
         ("original", "Original", "Only the picture, without the map"),
         ("side", "Side by side", "The picture and the overlay next to each other"))


def _icon(name: str) -> QIcon:
    try:
        from gradcam_desktop.ui.icons import icon

        return icon(name)
    except (ImportError, FileNotFoundError):
        return QIcon()  # icons are decoration: a missing one must not stop the window


@dataclass
class Actions:
    """The window's actions; ``needs_engine`` are disabled until TensorFlow is ready."""

    open_model: QAction
    open_demo: QAction
    open_zoo: QAction
    open_images: QAction
    open_folder: QAction
    paste: QAction
    export: QAction
    export_all: QAction
    copy: QAction
    quit: QAction
    fit: QAction
    actual: QAction
    fullscreen: QAction
    previous: QAction
    next: QAction
    help: QAction
    about: QAction
    recent_menu: QMenu
    modes: dict[str, QAction] = field(default_factory=dict)
    needs_engine: list[QAction] = field(default_factory=list)


def _action(window, text: str, slot, *, shortcut=None, tip: str = "", icon: str | None = None) -> QAction:
    action = QAction(text, window)
    if shortcut is not None:
        shortcuts = shortcut if isinstance(shortcut, list) else [shortcut]
        action.setShortcuts([QKeySequence(s) for s in shortcuts])
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    if icon:
        action.setIcon(_icon(icon))
    action.triggered.connect(lambda _checked=False: slot())
    return action


def build_actions(window: MainWindow) -> Actions:
    """Create the actions and the menu bar; returns them for the toolbar and enabling."""
    w = window
    a = Actions(
        open_model=_action(w, "Open &Model…", lambda: open_model_dialog(w), shortcut="Ctrl+Shift+O",
                           tip="Open a Keras model file (.keras or .h5)", icon="open-model"),
        open_demo=_action(w, "Open &Demo Model", lambda: w.open_model("demo"),
                          tip="The built-in demo: a small model that recognises shapes", icon="demo"),
        open_zoo=_action(w, "Open &Zoo Model…", lambda: open_zoo_dialog(w),
                         tip="A well-known ImageNet model (downloaded once)", icon="zoo"),
        open_images=_action(w, "Open &Images…", lambda: open_images_dialog(w), shortcut=QKeySequence.StandardKey.Open,
                            tip="Open one or more pictures", icon="open-images"),
        open_folder=_action(w, "Open &Folder…", lambda: open_folder_dialog(w), shortcut="Ctrl+Alt+O",
                            tip="Open every picture in a folder"),
        paste=_action(w, "&Paste Image", w.paste, shortcut=QKeySequence.StandardKey.Paste,
                      tip="Open the picture on the clipboard"),
        export=_action(w, "&Export Overlay…", lambda: export_dialog(w), shortcut=QKeySequence.StandardKey.Save,
                       tip="Save the overlay at the picture's full size, with the map and its settings",
                       icon="export"),
        export_all=_action(w, "Export &All…", lambda: export_all_dialog(w), shortcut="Ctrl+Shift+S",
                           tip="Save an overlay for every opened picture into a folder"),
        copy=_action(w, "&Copy Overlay", w.copy_overlay, shortcut=QKeySequence.StandardKey.Copy,
                     tip="Copy the overlay to the clipboard, to paste it into a document", icon="copy"),
        quit=_action(w, "&Quit", w.close, shortcut=QKeySequence.StandardKey.Quit),
        fit=_action(w, "&Fit to Window", w.view.fit_to_window, shortcut="Ctrl+0",
                    tip="Show the whole picture", icon="fit"),
        actual=_action(w, "Actual &Size (1:1)", w.view.actual_size, shortcut="Ctrl+1",
                       tip="One picture pixel per screen pixel", icon="zoom-1to1"),
        fullscreen=_action(w, "F&ull Screen", w.toggle_full_screen, shortcut="F11"),
        previous=_action(w, "&Previous Image", lambda: w.step_image(-1), shortcut=["Left", "A"],
                         tip="Previous picture (keeps layer, class and view settings)"),
        next=_action(w, "&Next Image", lambda: w.step_image(+1), shortcut=["Right", "D"],
                     tip="Next picture (keeps layer, class and view settings)"),
        help=_action(w, "&What am I looking at?", lambda: dialogs.show_help(w), shortcut=QKeySequence.StandardKey.HelpContents,
                     icon="help"),
        about=_action(w, "&About Grad-CAM Desktop", lambda: dialogs.show_about(w, w.versions)),
        recent_menu=QMenu("&Recent Models", w),
    )
    # Short labels for the toolbar (the menus keep the full ones).
    for action, short in ((a.open_images, "Images"), (a.open_model, "Model"), (a.open_demo, "Demo"),
                          (a.export, "Export"), (a.copy, "Copy"), (a.fit, "Fit"), (a.actual, "1:1"),
                          (a.help, "Help")):
        action.setIconText(short)
    a.fullscreen.setCheckable(True)
    a.quit.setMenuRole(QAction.MenuRole.QuitRole)
    a.about.setMenuRole(QAction.MenuRole.AboutRole)
    group = QActionGroup(w)
    for mode, text, tip in MODES:
        action = _action(w, text, lambda m=mode: w.set_view_mode(m), tip=tip)
        action.setCheckable(True)
        group.addAction(action)
        a.modes[mode] = action
    a.modes["overlay"].setChecked(True)
    # Left/Right work wherever the focus is (as in image viewers); the layer tree keeps Up/Down
    # for stepping through layers, and text fields keep letters (they claim ShortcutOverride).
    for action in (a.previous, a.next):
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    a.needs_engine = [a.open_model, a.open_demo, a.open_zoo, a.export, a.export_all, a.copy]

    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    for action in (a.open_model, a.open_demo, a.open_zoo):
        file_menu.addAction(action)
    file_menu.addMenu(a.recent_menu)
    file_menu.addSeparator()
    for action in (a.open_images, a.open_folder, a.paste):
        file_menu.addAction(action)
    file_menu.addSeparator()
    file_menu.addAction(a.export)
    file_menu.addAction(a.export_all)
    file_menu.addSeparator()
    file_menu.addAction(a.quit)
    edit_menu = bar.addMenu("&Edit")
    edit_menu.addAction(a.copy)
    edit_menu.addAction(a.paste)
    view_menu = bar.addMenu("&View")
    for action in a.modes.values():
        view_menu.addAction(action)
    view_menu.addSeparator()
    for action in (a.fit, a.actual, a.fullscreen):
        view_menu.addAction(action)
    view_menu.addSeparator()
    view_menu.addAction(a.previous)
    view_menu.addAction(a.next)
    w.view_menu = view_menu
    help_menu = bar.addMenu("&Help")
    help_menu.addAction(a.help)
    help_menu.addAction(a.about)
    return a


def fill_recent_menu(window: MainWindow) -> None:
    """Rebuild File → Recent Models from the settings."""
    menu = window.acts.recent_menu
    menu.clear()
    recent = window.settings.recent_models()
    for spec in recent:
        label = "Demo model" if spec == "demo" else spec if spec.startswith("zoo:") else Path(spec).name
        action = menu.addAction(label)
        action.setToolTip(spec)
        action.setStatusTip(spec)
        action.triggered.connect(lambda _checked=False, s=spec: window.open_model(s))
    menu.setEnabled(bool(recent))


# -- commands that start with a dialog --------------------------------------------------------
def open_model_dialog(window: MainWindow) -> None:
    path, _ = QFileDialog.getOpenFileName(window, "Open Model", window.settings.folder("models"), MODEL_FILTER)
    if path:
        window.settings.set_folder("models", str(Path(path).parent))
        window.open_model(path)


def open_zoo_dialog(window: MainWindow) -> None:
    name = dialogs.choose_zoo_model(window, list(window.versions.get("zoo_names", [])))
    if name:
        window.open_model(f"zoo:{name}")


def open_images_dialog(window: MainWindow) -> None:
    paths, _ = QFileDialog.getOpenFileNames(window, "Open Images", window.settings.folder("images"), IMAGE_FILTER)
    if paths:
        window.settings.set_folder("images", str(Path(paths[0]).parent))
        window.open_images(paths)


def open_folder_dialog(window: MainWindow) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Open Folder of Images", window.settings.folder("images"))
    if folder:
        window.settings.set_folder("images", folder)
        window.open_images([folder])


def export_dialog(window: MainWindow) -> None:
    image = window.current_image()
    stem = Path(image["name"]).stem if image else "overlay"
    start = str(Path(window.settings.folder("export") or Path.home()) / f"{stem}_gradcam.png")
    # QFileDialog asks before replacing the PNG itself; the three companion files are asked here.
    path, _ = QFileDialog.getSaveFileName(window, "Export Overlay", start, "PNG image (*.png)")
    if not path:
        return
    paths = export_paths(path)
    others = [p.name for kind, p in paths.items() if kind != "overlay" and p.exists()]
    if others and not dialogs.confirm(window, "Replace files?", "These files already exist and will be "
                                      "replaced:\n" + "\n".join(others)):
        return
    window.settings.set_folder("export", str(Path(path).parent))
    window.export_overlay(path)


def export_all_dialog(window: MainWindow) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Export All Overlays Into", window.settings.folder("export"))
    if not folder:
        return
    window.settings.set_folder("export", folder)
    existing = [Path(folder, Path(i["name"]).stem + ".png") for i in window.images()]
    existing = [p.name for p in existing if p.exists()]
    if existing and not dialogs.confirm(window, "Replace files?", f"{len(existing)} file(s) in this folder will "
                                        f"be replaced, for example {existing[0]}. Continue?"):
        return
    window.export_all(folder)


# -- paths: drops, the clipboard's files, the command line -------------------------------------
def is_model_path(path: str | Path) -> bool:
    """A model file, or a TensorFlow SavedModel folder (so the engine can say why it refuses it)."""
    p = Path(path)
    if p.is_dir():
        return (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists()
    return p.suffix.lower() in MODEL_SUFFIXES


def open_paths(window: MainWindow, paths: list[str]) -> None:
    """Models to ``open_model`` (the last one wins), the rest to ``open_images``."""
    models = [p for p in paths if is_model_path(p)]
    others = [p for p in paths if not is_model_path(p)]
    if models:
        window.open_model(models[-1])
    if others:
        window.open_images(others)


def has_local_files(mime: QMimeData) -> bool:
    """Whether a drag carries at least one local file (remote URLs are not opened)."""
    return mime.hasUrls() and any(u.isLocalFile() for u in mime.urls())


def local_paths(mime: QMimeData) -> list[str]:
    """The local files among a drop's or the clipboard's URLs."""
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]


# -- clipboard ---------------------------------------------------------------------------------
def paste(window: MainWindow) -> None:
    """Open the clipboard's picture, or the files copied in a file manager."""
    clipboard = QGuiApplication.clipboard()
    mime = clipboard.mimeData()
    if mime is not None and mime.hasUrls():
        window.open_paths(local_paths(mime))
    elif mime is not None and mime.hasImage():
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        clipboard.image().save(buffer, "PNG")  # encoded in memory: no temporary file
        window.open_images([bytes(buffer.data())])
    else:
        window.show_error("The clipboard holds no picture. Copy an image first, then paste.")


def copy_overlay(window: MainWindow) -> None:
    """Put the overlay, at the picture's own size, on the clipboard."""
    image, result = window.current_image(), window.shown_result()
    if result is None or image is None:
        window.set_status("There is no map to copy yet.")
        return
    overlay = blend(image["rgb"], result["display"], window.alpha_slider.value() / 100.0,
                    window.colormap_box.currentText())
    QGuiApplication.clipboard().setImage(rgb_to_qimage(overlay))
    window.set_status("Overlay copied to the clipboard.")
