"""The window's layout: caption and image view in the middle, Layers/Classes/Images docks (the
Classes dock also holds the method picker above the list and the score choice under it), the map
controls under the picture, toolbar and status bar (with Score-CAM's progress).

``build_widgets`` returns them as one ``Widgets`` record (``MainWindow.ui``): the window wires
them, tests and scripts find them there, and nothing is set on the window behind its back.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (QComboBox, QDockWidget, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QSizePolicy,
                               QSlider, QStackedWidget, QToolBar, QVBoxLayout, QWidget)

from gradcam_desktop.core.overlay import COLORMAPS
from gradcam_desktop.ui.caption import CaptionBar
from gradcam_desktop.ui.class_list import ClassListWidget
from gradcam_desktop.ui.colorbar import ColorBar
from gradcam_desktop.ui.compare_view import CompareView
from gradcam_desktop.ui.image_strip import ImageStrip
from gradcam_desktop.ui.image_view import ImageView
from gradcam_desktop.ui.layer_tree import LayerTreeView
from gradcam_desktop.ui.score_choice import MethodBox, ScoreChoice
from gradcam_desktop.ui.status_text import hover_value

__all__ = ["Widgets", "build_toolbar", "build_widgets"]

#: A docked list never takes more than this share of the window, whatever its content wants.
MAX_DOCK_SHARE = 0.4


@dataclass
class Widgets:
    """Every widget the window wires, by role."""

    view: ImageView
    compare: CompareView
    view_stack: QStackedWidget  # the view, or the compare grid in its place (View → Compare)
    caption: CaptionBar
    layer_tree: LayerTreeView
    class_list: ClassListWidget
    method_box: MethodBox
    score_choice: ScoreChoice
    strip: ImageStrip
    alpha_slider: QSlider
    alpha_label: QLabel
    colormap_box: QComboBox
    colorbar: ColorBar
    status_label: QLabel
    map_progress: QProgressBar
    prediction_label: QLabel
    time_label: QLabel
    value_label: QLabel
    layers_dock: QDockWidget
    classes_dock: QDockWidget
    images_dock: QDockWidget

    def wire_map_controls(self) -> None:
        """Opacity and colours act on the view and its legend directly: no map is recomputed."""
        self.alpha_slider.valueChanged.connect(self._show_alpha)
        self.colormap_box.currentTextChanged.connect(self._show_colormap)
        self.view.valueHovered.connect(lambda x, y, value: self.value_label.setText(hover_value(x, y, value)))

    def set_map_controls(self, alpha_percent: int, colormap: str) -> None:
        """Opacity (0–100) and colours, as if the user had set them (unknown colours: jet)."""
        self.alpha_slider.setValue(alpha_percent)
        self._show_alpha(self.alpha_slider.value())
        self.colormap_box.setCurrentText(colormap if colormap in COLORMAPS else "jet")
        self._show_colormap(self.colormap_box.currentText())

    def _show_alpha(self, value: int) -> None:
        self.view.set_alpha(value / 100.0)
        self.alpha_label.setText(f"{value} %")

    def _show_colormap(self, name: str) -> None:
        if name in COLORMAPS:
            self.view.set_colormap(name)
            self.colorbar.set_colormap(name)

    def fit_docks(self, window: QMainWindow) -> None:
        """Widen the Layers and Classes docks to what their content needs (never narrows them).

        A saved state from a smaller window, or a first model with long layer names, would
        otherwise cut percentages ("97.") and layer types and add scroll bars.
        """
        cap = int(window.width() * MAX_DOCK_SHARE)
        docks, sizes = [], []
        classes = max(self.class_list.content_width(), self.score_choice.minimumSizeHint().width())
        for dock, needed in ((self.layers_dock, self.layer_tree.content_width()), (self.classes_dock, classes)):
            want = min(needed + _dock_frame(dock), cap)
            if dock.isVisible() and not dock.isFloating() and dock.width() < want:
                docks.append(dock)
                sizes.append(want)
        if docks:
            window.resizeDocks(docks, sizes, Qt.Orientation.Horizontal)


def _dock_frame(dock: QDockWidget) -> int:
    """Dock width minus its content's width (frame and margins)."""
    widget = dock.widget()
    return max(0, dock.width() - widget.width()) if widget is not None and widget.width() > 0 else 2


class _TreeKeepsArrows(QObject):
    """Left/Right stay with the layer tree (collapse/expand) instead of the image shortcuts."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right) \
                and event.modifiers() == Qt.KeyboardModifier.NoModifier:
            event.accept()  # an accepted ShortcutOverride delivers the key to the widget
            return True
        return False


def build_widgets(window: QMainWindow) -> Widgets:
    """Create the central area, the docks, the map controls and the status bar labels."""
    layer_tree = LayerTreeView()
    layer_tree.setToolTip("The model's layers. Pick one marked with a coloured square to see "
                          "what it looks at; Up/Down step through them.")
    layer_tree.installEventFilter(_TreeKeepsArrows(layer_tree))
    class_list = ClassListWidget()
    class_list.setToolTip("What the model thinks the picture shows. Click a class to see "
                          "the evidence for it, and to keep it on the next pictures.")
    strip = ImageStrip()
    method_box, score_choice = MethodBox(), ScoreChoice()
    # A floor for an empty window; fit_docks widens the docks to their content once it is known.
    em = window.fontMetrics().horizontalAdvance("M")
    layer_tree.setMinimumWidth(16 * em)
    class_list.setMinimumWidth(12 * em)
    docks = []
    for title, name, widget, area in (
            ("Layers", "layersDock", layer_tree, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Classes", "classesDock", _classes_panel(method_box, class_list, score_choice),
             Qt.DockWidgetArea.RightDockWidgetArea),
            ("Images", "imagesDock", strip, Qt.DockWidgetArea.BottomDockWidgetArea)):
        dock = QDockWidget(title, window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        window.addDockWidget(area, dock)
        docks.append(dock)
    window.resizeDocks(docks[:2], [330, 260], Qt.Orientation.Horizontal)
    alpha_slider = QSlider(Qt.Orientation.Horizontal)
    alpha_slider.setObjectName("alphaSlider")
    alpha_slider.setRange(0, 100)
    alpha_slider.setFixedWidth(120)
    alpha_slider.setToolTip("How strongly the map covers the picture (0 % = picture only)")
    alpha_label = QLabel()
    alpha_label.setMinimumWidth(alpha_label.fontMetrics().horizontalAdvance("100 %") + 6)
    colormap_box = QComboBox()
    colormap_box.setObjectName("colormapBox")
    colormap_box.addItems(list(COLORMAPS))
    colormap_box.setToolTip("The colours used for the map")
    progress = QProgressBar()
    progress.setObjectName("mapProgress")
    # Wide enough for "Score-CAM: 100 %" on one line (its text is the method and the share done).
    progress.setFixedWidth(window.fontMetrics().horizontalAdvance("Score-CAM: 100 %") + 4 * em)
    progress.setToolTip("How far the map being computed is (Score-CAM runs the model once per feature map)")
    view, compare, view_stack = ImageView(), CompareView(), QStackedWidget()
    view_stack.setObjectName("viewStack")
    view_stack.addWidget(view)
    view_stack.addWidget(compare)
    ui = Widgets(view=view, compare=compare, view_stack=view_stack, caption=CaptionBar(), layer_tree=layer_tree,
                 class_list=class_list, method_box=method_box, score_choice=score_choice, strip=strip,
                 alpha_slider=alpha_slider, alpha_label=alpha_label, colormap_box=colormap_box, colorbar=ColorBar(),
                 status_label=QLabel(), map_progress=progress, prediction_label=QLabel(), time_label=QLabel(),
                 value_label=QLabel(), layers_dock=docks[0], classes_dock=docks[1], images_dock=docks[2])
    window.setCentralWidget(_central(ui))
    ui.wire_map_controls()
    ui.status_label.setObjectName("statusMessage")
    window.statusBar().addWidget(ui.status_label, 1)
    window.statusBar().addPermanentWidget(ui.map_progress)
    for label, tip in ((ui.prediction_label, "The class the model finds most likely"),
                       (ui.time_label, "How long the last map took to compute"),
                       (ui.value_label, "The map value under the mouse pointer (0 = none, 1 = this map's maximum)")):
        label.setToolTip(tip)
        window.statusBar().addPermanentWidget(label)
    return ui


def _classes_panel(method_box: MethodBox, class_list: ClassListWidget, score_choice: ScoreChoice) -> QWidget:
    """The Classes dock: how the map is computed (method) above the classes, which score under them."""
    panel = QWidget()
    panel.setObjectName("classesPanel")
    row = QHBoxLayout()
    row.setContentsMargins(6, 6, 6, 2)
    row.setSpacing(6)
    label = QLabel("Method")
    label.setBuddy(method_box)
    row.addWidget(label)
    row.addWidget(method_box, 1)
    layout = QVBoxLayout(panel)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    layout.addLayout(row)
    layout.addWidget(class_list, 1)
    layout.addWidget(score_choice)
    return panel


def _central(ui: Widgets) -> QWidget:
    """What the map shows above the picture; its colour legend, opacity and colours right under it."""
    central = QWidget()
    controls = QHBoxLayout()
    controls.setContentsMargins(8, 4, 8, 4)
    controls.setSpacing(6)
    opacity = QLabel("Opacity")
    opacity.setBuddy(ui.alpha_slider)
    colours = QLabel("Colours")
    colours.setBuddy(ui.colormap_box)
    for widget in (opacity, ui.alpha_slider, ui.alpha_label):
        controls.addWidget(widget)
    controls.addSpacing(12)
    for widget in (colours, ui.colormap_box):
        controls.addWidget(widget)
    controls.addStretch(1)
    # The legend gets a row of its own right under the picture, like a figure's: squeezed in
    # beside the controls its ramp shrank to a few pixels in a 1280-pixel window.
    legend = QHBoxLayout()
    legend.setContentsMargins(8, 4, 8, 0)
    legend.addStretch(1)
    legend.addWidget(ui.colorbar, 4)
    legend.addStretch(1)
    layout = QVBoxLayout(central)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    layout.addWidget(ui.caption)
    layout.addWidget(ui.view_stack, 1)
    layout.addLayout(legend)
    layout.addLayout(controls)
    return central


def build_toolbar(window: QMainWindow, acts) -> QToolBar:
    """The toolbar: open/export, view modes, zoom and help (``acts``: actions.Actions)."""
    bar = QToolBar("Tools", window)
    bar.setObjectName("toolsBar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    bar.setMovable(False)
    window.addToolBar(bar)
    for action in (acts.open_images, acts.open_model, acts.open_demo, None, acts.export, acts.copy, None):
        if action is None:
            bar.addSeparator()
        else:
            bar.addAction(action)
    for action in acts.modes.values():
        bar.addAction(action)
    bar.addAction(acts.compare)
    bar.addSeparator()
    bar.addAction(acts.fit)
    bar.addAction(acts.actual)
    spacer = QWidget()
    spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    bar.addWidget(spacer)
    bar.addAction(acts.help)
    return bar
