"""A segmentation model's predicted mask and region on the picture view (issue 20).

A segmentation model explains a class's scores summed over the pixels it assigns to that class (its
predicted mask), or over a region the user draws (``core.heads``). On the picture view:

* View → Predicted Mask Outline (on by default, segmentation models only) outlines the explained
  class's predicted mask, the output's cells scaled to the picture (the model input is the whole
  picture, resized): what the map's score is summed over.
* Edit → Draw Region (R, segmentation models only) turns the view into a box tool: a drag draws a box,
  and the map is computed again for "the class's scores summed over the box" (``MapSpec.region``, as
  fractions of the picture, so the region applies to every picture). The box stays drawn, dashed,
  while the region is in use; Edit → Clear Region goes back to the predicted mask. Another model
  clears it (``SessionState.set_model``). Mark Object is the other drag tool of the view: turning
  one on turns the other off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shiboken6
from PySide6.QtCore import QObject, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence, QPainterPath, QRegion, QTransform
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem, QMenu

from gradcam_desktop.ui.actions import insert_after
from gradcam_desktop.ui.explore.box_drag import BoxDrag, pen
from gradcam_desktop.ui.explore.image_view import ImageView

__all__ = ["SegmentationView", "attach", "mask_path"]

_OUTLINE = QColor("#00e5ff")  # cyan: apart from the map's jet colours and the object marks' yellow
_REGION = QColor("#ff4fd8")  # magenta: the region drawn

Box = tuple[float, float, float, float]  # (top, left, bottom, right) fractions of the picture


def attach(window: Any) -> SegmentationView:
    """View → Predicted Mask Outline, Edit → Draw Region / Clear Region on ``window`` (after its object
    marks: the two drag tools exclude each other). Its ``regionChanged`` asks the window for the map again."""
    tool = SegmentationView(window)
    menus = {m.title(): m for m in window.menuBar().findChildren(QMenu)}
    edit, view = menus.get("&Edit"), menus.get("&View")
    if edit is not None:
        edit.addSeparator()
        edit.addActions([tool.region_action, tool.clear_action])
    if view is not None:
        modes = getattr(window.acts, "modes", {})
        anchor = modes.get("side") if isinstance(modes, dict) else None
        if anchor is not None:
            insert_after(view, anchor, tool.outline_action)
        else:
            view.addAction(tool.outline_action)
    window.addAction(tool.region_action)  # the shortcut works wherever the focus is
    return tool


def mask_path(mask: np.ndarray) -> QPainterPath:
    """The outline of the True cells of ``mask`` (H′, W′), in cell units (cell (i, j) is the square
    j..j+1 × i..i+1): one path along the cells' edges, holes included (odd-even inside)."""
    mask = np.asarray(mask, dtype=bool)
    regions: list[QRegion] = []
    for row, line in enumerate(mask):  # each row's runs of cells, one rectangle each
        edges = np.flatnonzero(np.diff(np.concatenate(([0], line.astype(np.int8), [0]))))
        regions.extend(QRegion(QRect(int(start), row, int(stop - start), 1)) for start, stop in zip(edges[::2], edges[1::2]))
    while len(regions) > 1:  # united pairwise: n log n, where one by one is n²
        regions = [a.united(b) for a, b in zip(regions[::2], regions[1::2])] + regions[len(regions) - len(regions) % 2:]
    path = QPainterPath()
    if regions:
        path.addRegion(regions[0])
    return path.simplified()  # the rows' rectangles merged: only the outline stays


class SegmentationView(QObject):
    """The predicted-mask outline and the region tool of a segmentation model, on ``window.ui.view``."""

    #: The region drawn (a ``Box``) or None (the predicted masks again): the window asks for the map again.
    regionChanged = Signal(object)

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.view: ImageView = window.ui.view
        self._marks = getattr(window, "marks", None)  # object_marks.ObjectMarks: the other drag tool
        self._outline: list[QGraphicsPathItem] = []
        self._boxes: list[QGraphicsRectItem] = []
        self._shown: Any = None  # the MapResult whose mask is outlined
        self.outline_action = QAction("Predicted Mask &Outline", window)
        self.outline_action.setObjectName("maskOutline")
        self.outline_action.setCheckable(True)
        self.outline_action.setChecked(True)
        self.outline_action.setStatusTip("Outline the pixels a segmentation model assigns to the class explained: "
                                         "the map explains its scores summed over them")
        self.outline_action.toggled.connect(self._redraw)
        self.region_action = QAction("Draw &Region", window)
        self.region_action.setObjectName("drawRegion")
        self.region_action.setCheckable(True)
        self.region_action.setShortcut(QKeySequence("R"))
        self.region_action.setStatusTip("Drag a box on the picture: a segmentation model's map then explains the "
                                        "class's scores summed over the box instead of over its predicted mask")
        self.region_action.toggled.connect(self._set_drawing)
        self.clear_action = QAction("Clear Re&gion", window)
        self.clear_action.setObjectName("clearRegion")
        self.clear_action.setStatusTip("Explain the class's predicted mask again instead of the region drawn")
        self.clear_action.triggered.connect(self._clear)
        if self._marks is not None:
            self._marks.mark_action.toggled.connect(self._marking_toggled)
        self.drag = BoxDrag(self.view, self._picture_size, _REGION, self._set_box, z=12.0)
        window.state.subscribe(self._follow_state)
        window.resultShown.connect(self._show_result)
        # Side by side: drawn on both panes. Bound methods, not lambdas: Qt drops a bound connection when
        # this object goes, a lambda's lives on with the window's actions and would draw on a deleted view.
        for action in getattr(window.acts, "modes", {}).values():
            action.toggled.connect(self._redraw)
            action.triggered.connect(self._redraw)  # a click: after the view changed mode
        self._enable()

    # -- scripting surface ---------------------------------------------------------------------
    def region(self) -> Box | None:
        """The region drawn, (top, left, bottom, right) fractions of the picture, or None."""
        return self.window.state.region

    def set_region(self, region: Box | None) -> bool:
        """Sum the class's scores over ``region`` (None: over its predicted mask) and ask for the map again;
        False (and one line) when the open model is no segmentation model or the box is no box."""
        if region is not None:
            if not self._segmentation():
                self.window.show_error("A region can be drawn for a segmentation model only: this model's output "
                                       "is not a per-pixel one.")
                return False
            try:
                top, left, bottom, right = (min(max(float(side), 0.0), 1.0) for side in region)
            except (TypeError, ValueError):
                self.window.show_error(f"A region is four fractions of the picture (top, left, bottom, right), "
                                       f"not {region!r}.")
                return False
            if not (top < bottom and left < right):
                self.window.show_error("A region needs its top above its bottom and its left before its right.")
                return False
            region = (top, left, bottom, right)
        if region == self.window.state.region:
            return True
        self.window.state.choose(region=region)
        self._draw()
        self.regionChanged.emit(region)
        return True

    def outline_path(self) -> QPainterPath | None:
        """The outline drawn, in the mask's cell units (its item maps them onto the picture), or None."""
        return self._outline[0].path() if self._outline else None

    def outline_items(self) -> list[QGraphicsPathItem]:
        """The outline's items on the view's scene (tests): empty when none is drawn."""
        return list(self._outline)

    def region_items(self) -> list[QGraphicsRectItem]:
        """The region box's items on the view's scene (tests): empty when none is drawn."""
        return list(self._boxes)

    # -- following the window ------------------------------------------------------------------
    def _segmentation(self) -> bool:
        info = self.window.state.model
        return info is not None and info.head == "segmentation" and self.window.state.opening is None

    def _follow_state(self, change: str) -> None:
        if change in ("model", "picture", "pictures"):
            self._shown = None  # the mask shown was another picture's (or model's): the next map brings its own
        if change == "model":
            self._enable()
            if not self._segmentation():
                self.region_action.setChecked(False)
        self._draw()

    def _show_result(self, result: Any) -> None:
        self._shown = result
        self._draw()

    def _enable(self) -> None:
        segmentation = self._segmentation()
        self.outline_action.setEnabled(segmentation)
        self.region_action.setEnabled(segmentation)
        self.clear_action.setEnabled(segmentation and self.window.state.region is not None)

    def _marking_toggled(self, marking: bool) -> None:
        if marking:
            self.region_action.setChecked(False)

    # -- the region tool -----------------------------------------------------------------------
    def _set_drawing(self, on: bool) -> None:
        if on and self._marks is not None:
            self._marks.mark_action.setChecked(False)  # one drag tool at a time
        marking = self._marks is not None and self._marks.mark_action.isChecked()
        self.drag.set_active(on, restore=not marking)  # Mark Object took over: its cursor and drag mode stay
        if on:
            self.window.set_status("Draw Region: drag a box on the picture; the map then explains the class's scores "
                                   "summed over it (press R again to stop; Edit → Clear Region goes back to the "
                                   "predicted mask).")

    def _set_box(self, rect: QRectF) -> None:
        size = self._picture_size()
        if size is not None:
            h, w = size
            self.set_region((rect.top() / h, rect.left() / w, rect.bottom() / h, rect.right() / w))

    def _picture_size(self) -> tuple[int, int] | None:
        picture = self.window.current_image()
        rgb = picture.rgb if picture is not None else None
        return None if rgb is None else (int(rgb.shape[0]), int(rgb.shape[1]))

    # -- drawing -------------------------------------------------------------------------------
    def _redraw(self, *_args: Any) -> None:
        self._draw()

    def _clear(self, *_args: Any) -> None:
        self.set_region(None)

    def _draw(self) -> None:
        if not shiboken6.isValid(self.view):  # the window is being taken down
            return
        scene = self.view.scene()
        for item in (*self._outline, *self._boxes):
            scene.removeItem(item)
        self._outline, self._boxes = [], []
        self._enable()
        size = self._picture_size()
        if size is None or not self._segmentation():
            return
        h, w = size
        panes = self._panes(h, w)
        region = self.window.state.region
        if region is not None:
            top, left, bottom, right = region
            for x, (colour, dashed) in ((x, look) for x in panes for look in ((QColor(0, 0, 0, 200), False),
                                                                             (_REGION, True))):
                item = QGraphicsRectItem(QRectF(x + left * w, top * h, (right - left) * w, (bottom - top) * h))
                item.setPen(pen(colour, dashed=dashed))
                item.setZValue(11)
                scene.addItem(item)
                self._boxes.append(item)
        result = self._shown
        mask = getattr(getattr(result, "prediction", None), "mask", None)
        if not self.outline_action.isChecked() or mask is None or np.ndim(mask) != 2 or not np.size(mask):
            return
        path = mask_path(np.asarray(mask) == result.class_index)
        grid_h, grid_w = np.shape(mask)
        for x, (colour, width) in ((x, look) for x in panes for look in ((QColor(0, 0, 0, 190), 4.0), (_OUTLINE, 2.0))):
            item = QGraphicsPathItem(path)
            line = pen(colour, dashed=False, width=width)
            line.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            item.setPen(line)
            # Output cells → picture pixels (the model input is the whole picture, resized).
            item.setTransform(QTransform.fromScale(w / grid_w, h / grid_h) * QTransform.fromTranslate(x, 0))
            item.setZValue(9)
            scene.addItem(item)
            self._outline.append(item)

    def _panes(self, h: int, w: int) -> list[float]:
        """Where the picture's panes start on the scene: the picture, and in side by side the overlay at
        its right (the scene is the two panes and the gap between them)."""
        rect = self.view.sceneRect()
        if self.view.mode() == "side" and round(rect.height()) == h and rect.width() > 2 * w:
            return [0.0, rect.width() - w]
        return [0.0]
