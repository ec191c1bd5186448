"""The window's layout: central image view, Layers/Classes/Images docks, toolbar, status bar.

Kept apart from main_window.py so that file holds the behaviour (wiring) only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (QComboBox, QDockWidget, QHBoxLayout, QLabel, QSizePolicy, QSlider, QToolBar,
                               QVBoxLayout, QWidget)

from gradcam_desktop.core.overlay import COLORMAPS
from gradcam_desktop.ui.class_list import ClassListWidget
from gradcam_desktop.ui.colorbar import ColorBar
from gradcam_desktop.ui.image_strip import ImageStrip
from gradcam_desktop.ui.image_view import ImageView
from gradcam_desktop.ui.layer_tree import LayerTreeView

if TYPE_CHECKING:
    from gradcam_desktop.ui.main_window import MainWindow


class _TreeKeepsArrows(QObject):
    """Left/Right stay with the layer tree (collapse/expand) instead of the image shortcuts."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and event.key() in (Qt.Key.Key_Left, Qt.Key.Key_Right) \
                and event.modifiers() == Qt.KeyboardModifier.NoModifier:
            event.accept()  # an accepted ShortcutOverride delivers the key to the widget
            return True
        return False


def build_widgets(window: MainWindow) -> None:
    """Create the central view, the docks, the view controls and the status bar labels."""
    window.view = ImageView()
    window.layer_tree = LayerTreeView()
    window.layer_tree.setToolTip("The model's layers. Pick one marked with a coloured square to see "
                               "what it looks at; Up/Down step through them.")
    window.layer_tree.installEventFilter(_TreeKeepsArrows(window.layer_tree))
    window.class_list = ClassListWidget()
    window.class_list.setToolTip("What the model thinks the picture shows. Click a class to see "
                               "the evidence for it.")
    window.strip = ImageStrip()
    # A state saved in a smaller window must not squeeze the lists into unreadable slivers.
    em = window.fontMetrics().horizontalAdvance("M")
    window.layer_tree.setMinimumWidth(16 * em)
    window.class_list.setMinimumWidth(12 * em)
    for title, name, widget, area in (
            ("Layers", "layersDock", window.layer_tree, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Classes", "classesDock", window.class_list, Qt.DockWidgetArea.RightDockWidgetArea),
            ("Images", "imagesDock", window.strip, Qt.DockWidgetArea.BottomDockWidgetArea)):
        dock = QDockWidget(title, window)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        window.addDockWidget(area, dock)
    window.resizeDocks([window.findChild(QDockWidget, "layersDock"), window.findChild(QDockWidget, "classesDock")],
                     [330, 260], Qt.Orientation.Horizontal)
    window.alpha_slider = QSlider(Qt.Orientation.Horizontal)
    window.alpha_slider.setObjectName("alphaSlider")
    window.alpha_slider.setRange(0, 100)
    window.alpha_slider.setFixedWidth(160)
    window.alpha_slider.setToolTip("How strongly the map covers the picture (0 % = picture only)")
    window.alpha_label = QLabel()
    window.alpha_label.setMinimumWidth(window.alpha_label.fontMetrics().horizontalAdvance("100 %") + 6)
    window.colormap_box = QComboBox()
    window.colormap_box.setObjectName("colormapBox")
    window.colormap_box.addItems(list(COLORMAPS))
    window.colormap_box.setToolTip("The colours used for the map")
    window.colorbar = ColorBar()
    window.setCentralWidget(_central(window))
    window.status_label = QLabel()
    window.prediction_label, window.time_label, window.value_label = QLabel(), QLabel(), QLabel()
    window.status_label.setObjectName("statusMessage")
    window.statusBar().addWidget(window.status_label, 1)
    for label, tip in ((window.prediction_label, "The class the model finds most likely"),
                       (window.time_label, "How long the last map took to compute"),
                       (window.value_label, "The map value under the mouse pointer (0 = none, 1 = most)")):
        label.setToolTip(tip)
        window.statusBar().addPermanentWidget(label)


def _central(window: MainWindow) -> QWidget:
    """The image with its map controls right under it: opacity, colours and their legend."""
    central = QWidget()
    controls = QHBoxLayout()
    controls.setContentsMargins(8, 4, 8, 4)
    controls.setSpacing(6)
    opacity = QLabel("Opacity")
    opacity.setBuddy(window.alpha_slider)
    colours = QLabel("Colours")
    colours.setBuddy(window.colormap_box)
    for widget in (opacity, window.alpha_slider, window.alpha_label):
        controls.addWidget(widget)
    controls.addSpacing(12)
    for widget in (colours, window.colormap_box):
        controls.addWidget(widget)
    controls.addSpacing(12)
    controls.addWidget(window.colorbar)
    controls.addStretch(1)
    layout = QVBoxLayout(central)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(0)
    layout.addWidget(window.view, 1)
    layout.addLayout(controls)
    return central


def build_toolbar(window: MainWindow) -> None:
    """The toolbar: open/export, view modes, zoom, opacity, colours and their legend."""
    bar = QToolBar("Tools", window)
    bar.setObjectName("toolsBar")
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    bar.setMovable(False)
    window.addToolBar(bar)
    a = window.acts
    for action in (a.open_images, a.open_model, a.open_demo, None, a.export, a.copy, None):
        if action is None:
            bar.addSeparator()
        else:
            bar.addAction(action)
    for action in a.modes.values():
        bar.addAction(action)
    bar.addSeparator()
    bar.addAction(a.fit)
    bar.addAction(a.actual)
    spacer = QWidget()
    spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    bar.addWidget(spacer)
    bar.addAction(a.help)
