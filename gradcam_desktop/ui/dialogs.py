"""Message boxes, pickers and the commands that start with a file dialog, all safe for automation.

Messages never block: they are shown with ``open()`` (window-modal, returns at once), and with
``GRADCAM_DESKTOP_NO_DIALOGS=1`` they are not shown at all (the window still sets its status bar
and emits ``errorShown``). Pickers (file and zoo dialogs) only run from menu actions, and each
ends in one of the window's scripting methods.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QInputDialog, QMessageBox, QProgressDialog,
                               QTextBrowser, QVBoxLayout, QWidget)

from gradcam_desktop.core.images import IMAGE_EXTENSIONS
from gradcam_desktop.core.types import ZOO_PREFIX
from gradcam_desktop.ui.applog import log_path
from gradcam_desktop.ui.dnd import model_location

if TYPE_CHECKING:
    from gradcam_desktop.ui.main_window import MainWindow

# A file dialog picks files or folders, never both: a SavedModel folder opens by choosing its
# saved_model.pb (or keras_metadata.pb) here, or the folder itself with Open SavedModel Folder….
MODEL_FILTER = ("Models (*.keras *.h5 *.hdf5 *.onnx *.tflite saved_model.pb keras_metadata.pb);;"
                "Keras model files (*.keras *.h5 *.hdf5);;"
                "SavedModel folders (saved_model.pb keras_metadata.pb);;"
                "ONNX and TensorFlow Lite files (*.onnx *.tflite);;All files (*)")
IMAGE_FILTER = "Images ({});;All files (*)".format(" ".join(f"*{e}" for e in sorted(IMAGE_EXTENSIONS)))

HELP_TITLE = "What am I looking at?"
HELP_TEXT = """\
<h3>The heat map</h3>
<p>The colours laid over the picture show which parts of the image made the model lean towards
the class named above the picture. The legend under the picture runs from <b>0</b> (no evidence)
to <b>this map's maximum</b>: every map is scaled to its own maximum, so red means "the most of
this map", never the same amount in two maps. The map shows <i>where the model looked</i>, not
whether it is right: a hot spot on the background, a ruler or a text label often means the model
learned a shortcut.</p>
<h3>Methods</h3>
<p>The <b>Method</b> box (above the classes) chooses how the map is computed. All but two start
from the same thing: a layer's feature maps and how much each position of each feature map
raises the class's score (its <i>gradient</i>).</p>
<ul>
<li><b>Grad-CAM</b>: weighs each feature map by its average gradient. Broad, stable, the usual
first look.</li>
<li><b>Grad-CAM++</b>: like Grad-CAM, but counts positive gradients position by position;
tends to cover several objects of the same class better.</li>
<li><b>HiResCAM</b>: gradient times feature map at each position, then summed: exactly what
raised the score, sharper and noisier.</li>
<li><b>Grad-CAM element-wise</b>: like HiResCAM, but only positive contributions count.</li>
<li><b>XGrad-CAM</b>: Grad-CAM with each feature map's weight normalised by its total
activation (gradient times activation, summed, divided by the activations' sum).</li>
<li><b>LayerCAM</b>: keeps only positive gradients, per position; finer detail, useful on
earlier layers.</li>
<li><b>Eigen-CAM</b>: no gradients, no class: the main pattern of the layer's feature maps.
It is <b>the same map for every class</b> and every score.</li>
<li><b>Score-CAM</b>: no gradients: masks the picture with each feature map and asks the model
how much of the score remains. It runs the model once per feature map, so it takes a while
(progress in the status bar); clicking elsewhere stops it.</li>
</ul>
<p>These look at the picture's <i>pixels</i>, not at a layer: they answer <i>which pixels</i> move the
score, which is not always where the object is.</p>
<ul>
<li><b>Saliency</b>: how much a small change of each pixel would move the score. Sharp but noisy.</li>
<li><b>Integrated Gradients</b>: the score's rise from a black picture to this one, shared out among
the pixels; the map shows the pixels that speak <i>for</i> the class.</li>
<li><b>SmoothGrad</b>: saliency averaged over noisy copies of the picture: less noise.</li>
<li><b>Guided Backprop</b>: crisp edges, but it looks much the same for every class.</li>
<li><b>Guided Grad-CAM</b>: Guided Backprop's pixels inside Grad-CAM's region.</li>
</ul>
<p>These need only the model's answers, so they also explain models whose layers cannot be seen
(an ONNX or TensorFlow Lite file, an exported SavedModel):</p>
<ul>
<li><b>Occlusion</b>: hides one square at a time and measures how much the score drops.</li>
<li><b>RISE</b>: thousands of random masks, each weighed by the score it leaves. Black masks can
look like shapes to a model: compare it with a CAM before trusting it.</li>
</ul>
<h3>Evidence for, rather than, against</h3>
<p>Under the classes, <b>Evidence</b> chooses the question the map answers. <b>For the class</b>:
what in the picture raises its score. <b>For it, rather than</b> another class: what raises its
score <i>more</i> than the other's, the parts that tell the two apart (what the two classes
share tends to fade). <b>Against the class</b>: what lowers its score, the evidence
the model saw for something else.</p>
<h3>When not to trust a map</h3>
<ul>
<li><b>Methods disagree</b>: if Grad-CAM, Grad-CAM++ and Score-CAM point at different places,
no one of them is "the" explanation; trust only what they share.</li>
<li><b>Eigen-CAM</b> cannot tell you anything about a particular class: it looks the same
whichever class you pick.</li>
<li><b>A flat map</b> (the caption says so): nothing at this layer speaks for the class; the
colours are noise scaled up.</li>
<li><b>An unlikely class</b> (below 5 %) still gets red spots: they show where the evidence
<i>would</i> be, not that it is there.</li>
<li><b>Rather than / against</b> maps answer a narrower question: a cold area there does not
mean the model ignored it, only that it does not tell the two classes apart (or does not speak
against the class).</li>
<li>Maps at late layers are coarse (the grid may be 7 × 7 for a whole photo); a precise edge in
the overlay is the upsampling, not the model.</li>
</ul>
<h3>Classes</h3>
<p>The <b>Classes</b> list shows what the model thinks the picture is, most likely first, with
its probability. Click any class to see the evidence for that class, even one the model did not
pick; it is then kept for the next pictures ("Keep class"), until you choose "Follow each
picture's top class". Type in the box above the list to find a class by name.</p>
<h3>Layers</h3>
<p>A model looks at a picture in stages called <b>layers</b>. Early layers see edges and
textures in fine detail; late layers see whole objects on a coarse grid. The map is taken at one
layer: by default the last one that still has a grid (shown in bold), which is the usual choice.
Layers marked with a coloured square can show a map; grey layers cannot (they no longer have a
grid). Use the Up and Down keys in the list to step through the layers.</p>
<h3>Handy keys</h3>
<p>Left/Right (or A/D): previous/next picture, keeping layer, class, method and view settings.
Ctrl+wheel: zoom. Ctrl+C: copy the overlay. Ctrl+S: save it with its settings (the method and
the score are written into the sidecar file).</p>
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


def ask_trust(parent: QWidget, file_name: str, reason: str, on_trust: Callable[[], object]) -> QMessageBox | None:
    """Explain a refused model and offer "Trust this file" (calls ``on_trust`` if chosen)."""
    if not dialogs_enabled():
        return None
    box = QMessageBox(QMessageBox.Icon.Warning, "Model not opened",
                      f"<b>{file_name}</b> was not opened because it contains code.", parent=parent)
    box.setInformativeText(
        f"{reason}<br><br>This file carries Python code (a <i>Lambda</i> layer or a lambda function) "
        "that runs when it is opened. Trusting it allows that code and nothing else: classes from "
        "other modules and layers that read files stay refused. Open it only if you trust where it "
        "came from (for example, you or a colleague trained it).")
    trust = box.addButton("Trust this file", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.buttonClicked.connect(lambda button: on_trust() if button is trust else None)
    box.open()
    return box


def ask_custom_layers(parent: QWidget, file_name: str, reason: str,
                      on_load: Callable[[], None]) -> QMessageBox | None:
    """A model that needs its own layer classes: say so, and offer File → Load Custom Layers from a
    Python File… right here ("Load Custom Layers…" calls ``on_load``). objectName "customLayersRefusal"."""
    if not dialogs_enabled():
        return None
    box = QMessageBox(QMessageBox.Icon.Warning, "Model not opened",
                      f"<b>{escape(file_name)}</b> was not opened: it needs custom layers.", parent=parent)
    box.setObjectName("customLayersRefusal")
    box.setInformativeText(escape(reason))
    load = box.addButton("Load Custom Layers…", QMessageBox.ButtonRole.AcceptRole)
    load.setObjectName("loadCustomLayersButton")
    load.setToolTip("File → Load Custom Layers from a Python File…: run a Python file you trust that defines them")
    box.addButton(QMessageBox.StandardButton.Close)
    box.setDefaultButton(load)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    # Deferred: the file dialog it opens must not come up under this box, which closes after the click.
    box.buttonClicked.connect(lambda button: QTimer.singleShot(0, on_load) if button is load else None)
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


def show_help(parent: QWidget) -> QDialog | None:
    """The plain-language explanation of the map, the methods, the scores, classes and layers.

    A non-modal window with a scrolling text (objectName "helpText"): it is longer than a
    message box can show, and the user may want to read it beside the map.
    """
    if not dialogs_enabled():
        return None
    dialog = QDialog(parent)
    dialog.setWindowTitle(HELP_TITLE)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    text = QTextBrowser()
    text.setObjectName("helpText")
    text.setHtml(HELP_TEXT)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.close)
    layout = QVBoxLayout(dialog)
    layout.addWidget(text)
    layout.addWidget(buttons)
    em, line = dialog.fontMetrics().horizontalAdvance("M"), dialog.fontMetrics().height()
    screen = (parent.screen() if parent is not None else dialog.screen()).availableGeometry()
    dialog.resize(min(50 * em, int(screen.width() * 0.9)), min(48 * line, int(screen.height() * 0.85)))
    dialog.show()
    return dialog


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


# -- commands that start with a file dialog ----------------------------------------------------
def open_model_dialog(window: MainWindow) -> None:
    """A .keras/.h5/.onnx/.tflite file, or a SavedModel folder through its saved_model.pb (the folder opens)."""
    path, _ = QFileDialog.getOpenFileName(window, "Open Model (.keras, .h5, .onnx, .tflite, or a SavedModel's saved_model.pb)",
                                          window.settings.folder("models"), MODEL_FILTER)
    if path:
        _open_model_at(window, model_location(path))


def open_savedmodel_dialog(window: MainWindow) -> None:
    """A TensorFlow SavedModel folder (what tf.keras / tf_keras ``model.save("folder")`` writes)."""
    folder = QFileDialog.getExistingDirectory(window, "Open SavedModel Folder", window.settings.folder("models"))
    if folder:
        _open_model_at(window, folder)


def _open_model_at(window: MainWindow, path: str) -> None:
    # The next dialog starts beside this model: a SavedModel folder's parent, not inside it.
    window.settings.set_folder("models", str(Path(path).parent))
    window.open_model(path)


def open_zoo_dialog(window: MainWindow) -> None:
    name = choose_zoo_model(window, list(window.versions.get("zoo_names", [])))
    if name:
        window.open_model(ZOO_PREFIX + name)


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
    stem = Path(image.name).stem if image else "overlay"
    start = str(Path(window.settings.folder("export") or Path.home()) / f"{stem}_gradcam.png")
    # QFileDialog asks before replacing the PNG itself; the companion files are asked about here.
    path, _ = QFileDialog.getSaveFileName(window, "Export Overlay", start, "PNG image (*.png)")
    if not path:
        return
    from gradcam_desktop.ui.export import export_paths  # export shows dialogs itself: import when used

    others = [p.name for kind, p in export_paths(path).items() if kind != "overlay" and p.exists()]
    if others and not confirm(window, "Replace files?", "These files already exist and will be "
                              "replaced:\n" + "\n".join(others)):
        return
    window.settings.set_folder("export", str(Path(path).parent))
    window.export_overlay(path)


def export_all_dialog(window: MainWindow) -> None:
    folder = QFileDialog.getExistingDirectory(window, "Export All Overlays Into", window.settings.folder("export"))
    if not folder:
        return
    window.settings.set_folder("export", folder)
    targets = [Path(folder, Path(i.name).stem + ".png") for i in window.images()]
    existing = [p.name for p in targets if p.exists()]
    if existing and not confirm(window, "Replace files?", f"{len(existing)} file(s) in this folder will "
                                f"be replaced, for example {existing[0]}. Continue?"):
        return
    window.export_all(folder)
