"""The window's actions, its menu bar and the Recent Models menu.

Every action ends in one of the window's scripting methods (``open_model``, ``open_images``,
``export_overlay``, ``export_all``, ...) or in a command of ``dialogs`` that asks the user first,
so menus, drag-and-drop and scripts share one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar, QToolButton, QWidget

from gradcam_desktop.core.types import DEMO, ModelSpec
from gradcam_desktop.ui import custom_layers, dialogs, layout

if TYPE_CHECKING:
    from gradcam_desktop.ui.main_window import MainWindow

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
    open_savedmodel: QAction
    open_demo: QAction
    open_zoo: QAction
    custom_layers: QAction
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
    reset_layout: QAction
    compare: QAction
    previous: QAction
    next: QAction
    help: QAction
    about: QAction
    burn_in: QAction
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
    if slot is not None:
        action.triggered.connect(lambda _checked=False: slot())
    return action


def build_actions(window: MainWindow) -> Actions:
    """Create the actions and the menu bar; returns them for the toolbar and enabling."""
    w, ui = window, window.ui
    a = Actions(
        open_model=_action(w, "Open &Model…", lambda: dialogs.open_model_dialog(w), shortcut="Ctrl+Shift+O",
                           tip="Open a model: a .keras, .h5, .onnx or .tflite file, or a SavedModel folder's saved_model.pb",
                           icon="open-model"),
        open_savedmodel=_action(w, "Open &SavedModel Folder…", lambda: dialogs.open_savedmodel_dialog(w),
                                tip="Open a TensorFlow SavedModel folder (tf.keras model.save(\"folder\"))"),
        open_demo=_action(w, "Open &Demo Model", lambda: w.open_model(DEMO),
                          tip="The built-in demo: a small model that recognises shapes", icon="demo"),
        open_zoo=_action(w, "Open &Zoo Model…", lambda: dialogs.open_zoo_dialog(w),
                         tip="A well-known ImageNet model (downloaded once)", icon="zoo"),
        custom_layers=_action(w, "Load Custom &Layers from a Python File…", lambda: custom_layers.load_custom_layers_dialog(w),
                              tip="Your own Keras layers: run a Python file you trust that registers them"),
        open_images=_action(w, "Open &Images…", lambda: dialogs.open_images_dialog(w), shortcut=QKeySequence.StandardKey.Open,
                            tip="Open one or more pictures", icon="open-images"),
        open_folder=_action(w, "Open &Folder…", lambda: dialogs.open_folder_dialog(w), shortcut="Ctrl+Alt+O",
                            tip="Open every picture in a folder"),
        paste=_action(w, "&Paste Image", w.paste, shortcut=QKeySequence.StandardKey.Paste,
                      tip="Open the picture on the clipboard"),
        export=_action(w, "&Export Overlay…", lambda: dialogs.export_dialog(w), shortcut=QKeySequence.StandardKey.Save,
                       tip="Save the overlay at the picture's full size, with the map and its settings",
                       icon="export"),
        export_all=_action(w, "Export &All…", lambda: dialogs.export_all_dialog(w), shortcut="Ctrl+Shift+S",
                           tip="Save an overlay for every opened picture into a folder"),
        copy=_action(w, "&Copy Overlay", w.copy_overlay, shortcut=QKeySequence.StandardKey.Copy,
                     tip="Copy the overlay to the clipboard, to paste it into a document", icon="copy"),
        quit=_action(w, "&Quit", w.close, shortcut=QKeySequence.StandardKey.Quit),
        fit=_action(w, "&Fit to Window", ui.view.fit_to_window, shortcut="Ctrl+0",
                    tip="Show the whole picture", icon="fit"),
        actual=_action(w, "Actual &Size (1:1)", ui.view.actual_size, shortcut="Ctrl+1",
                       tip="One picture pixel per screen pixel", icon="zoom-1to1"),
        fullscreen=_action(w, "F&ull Screen", w.toggle_full_screen, shortcut="F11"),
        reset_layout=_action(w, "&Reset Layout", lambda: layout.reset_layout(w),
                             tip="Put every panel back where it starts, at its first size"),
        compare=_action(w, "&Compare…", None, shortcut="Ctrl+G",
                        tip="A grid of maps of this picture: methods, classes or layers side by side"),
        previous=_action(w, "&Previous Image", lambda: w.step_image(-1), shortcut=["Left", "A"],
                         tip="Previous picture (keeps layer, class and view settings)"),
        next=_action(w, "&Next Image", lambda: w.step_image(+1), shortcut=["Right", "D"],
                     tip="Next picture (keeps layer, class and view settings)"),
        help=_action(w, "&What am I looking at?", lambda: dialogs.show_help(w), shortcut=QKeySequence.StandardKey.HelpContents,
                     icon="help"),
        about=_action(w, "&About Grad-CAM Desktop", lambda: dialogs.show_about(w, w.versions)),
        burn_in=_action(w, "&Burn Caption and Legend into Exports", None,
                        tip="Exported pictures say what they show: the caption above, the colour legend below"),
        recent_menu=QMenu("&Recent Models", w),
    )
    # Short labels for the toolbar (the menus keep the full ones).
    for action, short in ((a.open_images, "Images"), (a.open_model, "Model"), (a.open_demo, "Demo"),
                          (a.export, "Export"), (a.copy, "Copy"), (a.fit, "Fit"), (a.actual, "1:1"), (a.compare, "Compare"),
                          (a.help, "Help")):
        action.setIconText(short)
    a.fullscreen.setCheckable(True)
    a.compare.setCheckable(True)
    a.burn_in.setCheckable(True)
    a.quit.setMenuRole(QAction.MenuRole.QuitRole)
    a.about.setMenuRole(QAction.MenuRole.AboutRole)
    group = QActionGroup(w)
    for mode, text, tip in MODES:
        action = _action(w, text, lambda m=mode: w.set_view_mode(m), tip=tip)
        action.setCheckable(True)
        group.addAction(action)
        a.modes[mode] = action
    a.modes["overlay"].setChecked(True)
    # Left/Right work wherever the focus is (as in image viewers), the layer tree and the class list
    # included: they step with Up/Down. Text fields (the class filter) keep Left/Right for the cursor
    # and letters for typing: they claim the keys' ShortcutOverride before any shortcut sees them.
    a.reset_layout.setObjectName("resetLayout")
    for action in (a.previous, a.next):
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    a.needs_engine = [a.open_model, a.open_savedmodel, a.open_demo, a.open_zoo, a.custom_layers, a.export, a.export_all, a.copy]

    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    for action in (a.open_model, a.open_savedmodel, a.open_demo, a.open_zoo, a.custom_layers):
        file_menu.addAction(action)
    file_menu.addMenu(a.recent_menu)
    file_menu.addSeparator()
    for action in (a.open_images, a.open_folder, a.paste):
        file_menu.addAction(action)
    file_menu.addSeparator()
    file_menu.addAction(a.export)
    file_menu.addAction(a.export_all)
    file_menu.addAction(a.burn_in)
    file_menu.addSeparator()
    file_menu.addAction(a.quit)
    edit_menu = bar.addMenu("&Edit")
    edit_menu.addAction(a.copy)
    edit_menu.addAction(a.paste)
    view_menu = bar.addMenu("&View")
    for action in a.modes.values():
        view_menu.addAction(action)
    view_menu.addAction(a.compare)
    view_menu.addSeparator()
    for action in (a.fit, a.actual, a.fullscreen, a.reset_layout):
        view_menu.addAction(action)
    view_menu.addSeparator()
    view_menu.addAction(a.previous)
    view_menu.addAction(a.next)
    help_menu = bar.addMenu("&Help")
    help_menu.addAction(a.help)
    help_menu.addAction(a.about)
    return a


#: Toggles of analysis views whose wiring does not put them in the View menu: (menu text, toolbar text, tip).
PANEL_TOGGLES = {
    "triageDock": ("&Triage", "Triage", "The Triage panel: a labelled folder's predictions, mistakes first, "
                   "and its confusion matrix (File → Open Labelled Folder…)"),
    "patternsDock": ("&Patterns", "Patterns", "The Patterns panel: what the model relies on for each class, as "
                     "clusters of its maps over a labelled folder (File → Find Patterns in Labelled Folder…)"),
}


def insert_after(widget: QWidget, anchor: QAction, action: QAction) -> None:
    """Put ``action`` right after ``anchor`` in ``widget`` (a menu, a toolbar); at the end if ``anchor`` is not there."""
    entries = widget.actions()
    index = entries.index(anchor) + 1 if anchor in entries else len(entries)
    if index < len(entries):
        widget.insertAction(entries[index], action)
    else:
        widget.addAction(action)  # what insertAction(None, action) does: append


def add_panel_toggles(window: MainWindow) -> None:
    """View → Triage (and on the toolbar) after Trust: the analysis views' toggles, in tab order.

    Call once every analysis dock exists (trust.wiring puts its own toggle after Compare)."""
    anchor = window.acts.compare
    for dock in layout.analysis_docks(window):
        action = dock.toggleViewAction()
        words = PANEL_TOGGLES.get(dock.objectName())
        if words is None:
            anchor = action if action.associatedObjects() else anchor
            continue
        text, short, tip = words
        action.setObjectName(f"{dock.objectName().removesuffix('Dock')}Action")
        action.setText(text)
        action.setIconText(short)
        action.setToolTip(tip)
        action.setStatusTip(tip)
        # The dock names its run in its title ("Triage — folder"), which Qt copies into the action.
        dock.windowTitleChanged.connect(lambda _title, action=action, text=text: action.setText(text))
        for widget in anchor.associatedObjects():
            if isinstance(widget, (QMenu, QToolBar)):
                insert_after(widget, anchor, action)
        anchor = action
    # A toggle inserted after Compare into every widget showing Compare also lands in Compare's
    # toolbar button, which then grows a menu arrow and a press-and-hold menu: one action a button.
    for button in window.acts.compare.associatedObjects():
        if isinstance(button, QToolButton):
            for extra in button.actions():
                if extra is not button.defaultAction():
                    button.removeAction(extra)


def fill_recent_menu(menu: QMenu, recent: list[str], open_model: Callable[[str], object]) -> None:
    """Rebuild File → Recent Models: one entry per model spec, most recent first."""
    menu.clear()
    for text in recent:
        spec = ModelSpec.parse(text)
        action = menu.addAction(spec.label)
        action.setToolTip(str(spec))
        action.setStatusTip(str(spec))
        action.triggered.connect(lambda _checked=False, s=str(spec): open_model(s))
    menu.setEnabled(bool(recent))
