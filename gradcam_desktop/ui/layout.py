"""The window's layout: caption and image view in the middle, Layers/Classes/Images docks (the
Classes dock also holds the method picker above the list and the score choice under it), the map
controls under the picture, toolbar and status bar (with Score-CAM's progress).

Where the panels go (issue 17, "a window that fits", checked at 1280×800)::

    ┌ Layers ┬──── caption, picture (or the compare grid) ────┬ Classes ┐
    │        │           legend, opacity, colours             │ (full   │
    ├────────┴────────────────────────────────────────────────┤ height) │
    │ Trust | Triage   (tabs: one analysis view at a time)     │         │
    ├──────────────────────────────────────────────────────────┤         │
    │ Images                                                   │         │
    └──────────────────────────────────────────────────────────┴─────────┘

The Classes column owns the bottom-right corner, so an analysis view opening under the picture
never takes rows from the class list; the area under the picture owns the bottom-left corner, so
the analysis views get the width their figures and tables need. Compare replaces the picture
(``view_stack``): its grid needs the picture's room, and keeps the classes beside it. Panels move
between areas by their title bar but never float (``arrange_panels``); View → Reset Layout
(``reset_layout``) puts every panel back.

``build_widgets`` returns them as one ``Widgets`` record (``MainWindow.ui``): the window wires
them, tests and scripts find them there, and nothing is set on the window behind its back.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QDockWidget, QHBoxLayout, QLabel, QMainWindow, QProgressBar, QSizePolicy,
                               QSlider, QStackedWidget, QTabWidget, QToolBar, QVBoxLayout, QWidget)

from gradcam_desktop.core.overlay import COLORMAPS
from gradcam_desktop.ui.explore.caption import CaptionBar
from gradcam_desktop.ui.explore.class_list import ClassListWidget
from gradcam_desktop.ui.explore.colorbar import ColorBar
from gradcam_desktop.ui.compare.view import CompareView
from gradcam_desktop.ui.explore.image_strip import ImageStrip
from gradcam_desktop.ui.explore.image_view import ImageView
from gradcam_desktop.ui.explore.layer_tree import LayerTreeView
from gradcam_desktop.ui.explore.score_choice import MethodBox, ScoreChoice
from gradcam_desktop.ui.status_text import hover_value

__all__ = ["ANALYSIS_DOCKS", "Widgets", "analysis_docks", "analysis_height", "arrange_panels", "build_toolbar",
           "build_widgets", "in_front", "reset_layout"]

#: A docked list never takes more than this share of the window, whatever its content wants.
MAX_DOCK_SHARE = 0.4
#: The Layers and Classes docks' widths in a new window (``fit_docks`` widens them to their content).
DOCK_WIDTHS = (330, 260)
#: Panels can be moved to another side by their title bar, never torn loose: a panel dragged out
#: once came back floating over the picture on every start, and once hid a dialog.
CORE_FEATURES = QDockWidget.DockWidgetFeature.DockWidgetMovable
ANALYSIS_FEATURES = CORE_FEATURES | QDockWidget.DockWidgetFeature.DockWidgetClosable
#: The analysis views' docks (object names; trust.wiring and triage.wiring make them): tabs of one
#: area under the picture, in this order.
ANALYSIS_DOCKS = ("trustPanel", "triageDock", "patternsDock")
#: The analysis area's height: this share of the window, at least ANALYSIS_MIN pixels (Trust's
#: cards), and never so much that the picture gets less than PICTURE_MIN.
ANALYSIS_SHARE = 0.45
ANALYSIS_MIN = 280
PICTURE_MIN = 240


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


def build_widgets(window: QMainWindow) -> Widgets:
    """Create the central area, the docks, the map controls and the status bar labels."""
    layer_tree = LayerTreeView()
    # Left/Right stay the picture keys here too (the tree steps with Up/Down; +/- fold a nested model).
    layer_tree.setToolTip("The model's layers. Pick one marked with a coloured square to see "
                          "what it looks at; Up/Down step through them, +/- fold a nested model.")
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
        dock.setFeatures(CORE_FEATURES)
        window.addDockWidget(area, dock)
        docks.append(dock)
    _set_corners(window)
    window.resizeDocks(docks[:2], list(DOCK_WIDTHS), Qt.Orientation.Horizontal)
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
    widget: QWidget
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


# -- where the panels go ----------------------------------------------------------------------------
def _set_corners(window: QMainWindow) -> None:
    """Classes runs the full height on the right; the area under the picture reaches the left edge."""
    window.setCorner(Qt.Corner.TopRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
    window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
    window.setCorner(Qt.Corner.TopLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
    window.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.BottomDockWidgetArea)


def _core_docks(ui: Widgets) -> tuple[QDockWidget, QDockWidget, QDockWidget]:
    return ui.layers_dock, ui.classes_dock, ui.images_dock


def analysis_docks(window: QMainWindow) -> list[QDockWidget]:
    """The analysis views' docks that exist, in ``ANALYSIS_DOCKS`` order."""
    found = (window.findChild(QDockWidget, name, Qt.FindChildOption.FindDirectChildrenOnly) for name in ANALYSIS_DOCKS)
    return [dock for dock in found if dock is not None]


def analysis_height(window: QMainWindow, dock: QDockWidget) -> int:
    """The height for ``dock`` (an analysis view in front): ANALYSIS_SHARE of the window, at least
    ANALYSIS_MIN, and leaving the picture at least PICTURE_MIN of the height the two share."""
    shared = dock.height() + window.ui.view_stack.height()  # type: ignore[attr-defined]
    return max(ANALYSIS_MIN, min(int(window.height() * ANALYSIS_SHARE), shared - PICTURE_MIN))


class _AnalysisSizer(QObject):
    """Keeps the analysis area useful. When a view comes to the front it gets ``analysis_height``
    if it is squeezed below ANALYSIS_MIN or squeezes the picture below PICTURE_MIN (a first height
    meant for another window size, a state saved maximised); when the window's height changes a
    lot (maximised, restored) the area takes its share of the new height."""

    def __init__(self, window: QMainWindow, views: list[QDockWidget]) -> None:
        super().__init__(window)
        self.setObjectName("analysisSizer")
        self._window, self._views = window, views
        self._height = window.height()
        for dock in views:

            def fit_if_shown(visible: bool, dock: QDockWidget = dock) -> None:
                if visible:
                    self.fit_later(dock)

            dock.visibilityChanged.connect(fit_if_shown)
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._window and event.type() == QEvent.Type.Resize:
            height = self._window.height()
            if abs(height - self._height) >= 0.15 * max(self._height, 1):
                self._height = height
                self.fit_later(None, force=True)
        return False

    def fit_later(self, dock: QDockWidget | None, *, force: bool = False) -> None:
        """``fit`` once the layout has settled (after the wiring's own first sizing, too)."""
        QTimer.singleShot(0, self, lambda: self.fit(dock, force=force))

    def fit(self, dock: QDockWidget | None = None, *, force: bool = False) -> None:
        self._height = self._window.height()
        dock = dock if dock is not None else next((d for d in self._views if in_front(d)), None)
        if dock is None or not in_front(dock) or self._window.dockWidgetArea(dock) != Qt.DockWidgetArea.BottomDockWidgetArea:
            return
        picture = self._window.ui.view_stack.height()  # type: ignore[attr-defined]
        if force or dock.height() < ANALYSIS_MIN or (picture < PICTURE_MIN and dock.height() > ANALYSIS_MIN):
            self._window.resizeDocks([dock], [analysis_height(self._window, dock)], Qt.Orientation.Vertical)


def in_front(dock: QDockWidget) -> bool:
    """Open and not behind another tab (a tab behind keeps its place off screen)."""
    return not dock.isHidden() and not dock.visibleRegion().isEmpty()


def _front_on_toggle(dock: QDockWidget) -> None:
    """The dock's toggle (View menu, toolbar, shortcut) brings its tab to the front when it is open
    behind another tab instead of closing it, and raises it when it opens."""
    action = dock.toggleViewAction()
    was_front = [True]
    # ``toggled`` comes before ``triggered`` (whose first slot, the dock's own, shows or closes it).
    action.toggled.connect(lambda _on: was_front.__setitem__(0, in_front(dock)))

    def bring_forward(checked: bool) -> None:
        if checked or not was_front[0]:
            dock.show()
            dock.raise_()

    action.triggered.connect(bring_forward)


def _tab_together(window: QMainWindow, views: list[QDockWidget]) -> None:
    """The analysis views as tabs of one area (unless the user moved one to another side)."""
    if not views:
        return
    first = views[0]
    for dock in views[1:]:
        if window.dockWidgetArea(dock) == window.dockWidgetArea(first) and dock not in window.tabifiedDockWidgets(first):
            window.tabifyDockWidget(first, dock)


def arrange_panels(window: QMainWindow) -> None:
    """Once every dock exists and the saved state is restored: nothing floats (a state with a
    floating panel, from an older version or a hand-edited file, gives way to the layout of a new
    window, with the same analysis views open), the analysis views are tabs of one area, and their
    toggles bring their tab to the front."""
    ui: Widgets = window.ui  # type: ignore[attr-defined]
    _set_corners(window)
    window.setTabPosition(Qt.DockWidgetArea.BottomDockWidgetArea, QTabWidget.TabPosition.North)
    views = analysis_docks(window)
    for dock in _core_docks(ui):
        dock.setFeatures(CORE_FEATURES)
    for dock in views:
        dock.setFeatures(ANALYSIS_FEATURES)
        _front_on_toggle(dock)
    _AnalysisSizer(window, views)
    if any(dock.isFloating() for dock in (*_core_docks(ui), *views)):
        reset_layout(window)
    else:
        _tab_together(window, views)


def reset_layout(window: QMainWindow) -> None:
    """View → Reset Layout: every panel docked where a new window has it, at its first size. Which
    analysis views are open stays as it is, and so does the one in front."""
    ui: Widgets = window.ui  # type: ignore[attr-defined]
    views = analysis_docks(window)
    open_views = [dock for dock in views if not dock.isHidden()]
    front = next((dock for dock in open_views if in_front(dock)), open_views[-1] if open_views else None)
    for dock in (*_core_docks(ui), *views):
        window.removeDockWidget(dock)
    _set_corners(window)
    window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, ui.layers_dock)
    window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, ui.classes_dock)
    for dock in views:
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock, Qt.Orientation.Vertical)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, ui.images_dock, Qt.Orientation.Vertical)
    for dock in (*_core_docks(ui), *views):
        dock.setFloating(False)  # only once it has an area again: Qt does not dock a dock without one
    _tab_together(window, views)
    for dock in (*_core_docks(ui), *open_views):
        dock.show()
    if front is not None:
        front.raise_()
    window.resizeDocks([ui.layers_dock, ui.classes_dock], list(DOCK_WIDTHS), Qt.Orientation.Horizontal)
    sizer = window.findChild(_AnalysisSizer, "analysisSizer")
    if front is not None and sizer is not None:
        sizer.fit_later(front, force=True)
    QTimer.singleShot(0, window, lambda: ui.fit_docks(window))  # widths settle in the next layout pass


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
