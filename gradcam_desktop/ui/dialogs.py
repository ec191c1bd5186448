"""Message boxes and small pickers, all safe for automation.

Messages never block: they are shown with ``open()`` (window-modal, returns at once), and with
``GRADCAM_DESKTOP_NO_DIALOGS=1`` they are not shown at all (the window still sets its status bar
and emits ``errorShown``). Pickers (file and zoo dialogs) only run from menu actions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox, QProgressDialog, QWidget

from gradcam_desktop.ui.applog import log_path

HELP_TITLE = "What am I looking at?"
HELP_TEXT = """\
<h3>The heat map</h3>
<p>The colours laid over the picture are a <b>Grad-CAM</b> map. They show which parts of the
image made the model lean towards the chosen class. The legend under the picture gives the
scale: the <b>high</b> end marks strong evidence, the <b>low</b> end little or none.
The map shows <i>where the model looked</i>, not whether it is right: a hot spot on the
background, a ruler or a text label often means the model learned a shortcut.</p>
<h3>Classes</h3>
<p>The <b>Classes</b> list shows what the model thinks the picture is, most likely first, with
its probability. Click any class to see the evidence for that class, even one the model did not
pick. Type in the box above the list to find a class by name.</p>
<h3>Layers</h3>
<p>A model looks at a picture in stages called <b>layers</b>. Early layers see edges and
textures in fine detail; late layers see whole objects on a coarse grid. The map is taken at one
layer: by default the last one that still has a grid (shown in bold), which is the usual choice.
Layers marked with a coloured square can show a map; grey layers cannot (they no longer have a
grid). Use the Up and Down keys in the list to step through the layers.</p>
<h3>Handy keys</h3>
<p>Left/Right (or A/D): previous/next picture, keeping layer, class and view settings.
Ctrl+wheel: zoom. Ctrl+C: copy the overlay. Ctrl+S: save it with its settings.</p>
"""


def dialogs_enabled() -> bool:
    """False when automation asked for no dialogs (GRADCAM_DESKTOP_NO_DIALOGS=1)."""
    return os.environ.get("GRADCAM_DESKTOP_NO_DIALOGS", "").strip() not in ("1", "true", "yes")


def show_message(parent: QWidget, title: str, text: str, *,
                 icon: QMessageBox.Icon = QMessageBox.Icon.Warning, details: str | None = None) -> QMessageBox | None:
    """A non-blocking message box (or nothing when dialogs are disabled)."""
    if not dialogs_enabled():
        return None
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    if details:
        box.setInformativeText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def ask_trust(parent: QWidget, file_name: str, reason: str, on_trust: Callable[[], None]) -> QMessageBox | None:
    """Explain a refused model and offer "Trust this file" (calls ``on_trust`` if chosen)."""
    if not dialogs_enabled():
        return None
    box = QMessageBox(QMessageBox.Icon.Warning, "Model not opened",
                      f"<b>{file_name}</b> was not opened because it contains code.", parent=parent)
    box.setInformativeText(
        f"{reason}<br><br>A model file with a <i>Lambda</i> layer carries Python code that runs "
        "when it is opened. Open it only if you trust where it came from (for example, you or a "
        "colleague trained it).")
    trust = box.addButton("Trust this file", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.buttonClicked.connect(lambda button: on_trust() if button is trust else None)
    box.open()
    return box


def confirm(parent: QWidget, title: str, text: str) -> bool:
    """Ask yes/no (blocking: only used right after a file dialog the user opened)."""
    if not dialogs_enabled():
        return True
    answer = QMessageBox.question(parent, title, text,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def choose_zoo_model(parent: QWidget, names: list[str]) -> str | None:
    """Pick a Keras Applications model by name (None if cancelled)."""
    if not names:
        show_message(parent, "No zoo models", "The list of zoo models is not available yet.")
        return None
    name, ok = QInputDialog.getItem(
        parent, "Open Zoo Model",
        "ImageNet models from Keras Applications.\nThe weights are downloaded once (needs the "
        "internet the first time).", names, 0, False)
    return name if ok and name else None


def download_progress(parent: QWidget, title: str, on_cancel: Callable[[], None]) -> QProgressDialog | None:
    """A progress dialog with a Cancel button, updated from the worker's progress signal."""
    if not dialogs_enabled():
        return None
    dialog = QProgressDialog("Preparing the model…", "Cancel", 0, 0, parent)
    dialog.setWindowTitle(title)
    dialog.setWindowModality(Qt.WindowModality.WindowModal)
    dialog.setMinimumDuration(400)  # cached weights load quickly: no flashing dialog
    dialog.setAutoClose(False)
    dialog.setAutoReset(False)
    dialog.canceled.connect(on_cancel)
    return dialog


def show_help(parent: QWidget) -> QMessageBox | None:
    """The plain-language explanation of Grad-CAM, layers and classes."""
    return show_message(parent, HELP_TITLE, HELP_TEXT, icon=QMessageBox.Icon.Information)


def about_text(versions: dict) -> str:
    """Versions of everything that matters for reproducing a map."""
    rows = [("Grad-CAM Desktop", versions.get("app", "?")), ("Python", versions.get("python", "?")),
            ("Qt", versions.get("qt", "?")), ("PySide6", versions.get("pyside", "?")),
            ("TensorFlow", versions.get("tensorflow", "still starting…")),
            ("Keras", versions.get("keras", "still starting…"))]
    table = "".join(f"<tr><td>{name}</td><td>&nbsp;{value}</td></tr>" for name, value in rows)
    return ("<p>See where a Keras image classifier looks (Grad-CAM, Selvaraju et al., 2017).</p>"
            f"<table>{table}</table><p>Log file: {escape(str(log_path()))}</p>")


def show_about(parent: QWidget, versions: dict) -> QMessageBox | None:
    return show_message(parent, "About Grad-CAM Desktop", about_text(versions), icon=QMessageBox.Icon.Information)
