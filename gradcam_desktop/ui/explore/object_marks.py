"""Mark where the object is on a picture, and see how much of the map falls on it (issue 19).

Edit → Mark Object (M) turns the picture view into a box tool: a drag on the picture draws a box
around the object (in picture pixels; several boxes are one object). The boxes are saved beside
the picture at once (``<picture>.object.json``, core/object_sidecar.py), so ``gradcam patterns``,
``report`` and the Patterns view use them too, and come back whenever the picture is shown. Each
map shown on a marked picture gets its **inside share** in the caption: the map's energy inside
the boxes over its total (core/inside_share.py, the map upsampled to the picture as the overlay
is). Edit → Clear Object Marks removes the picture's boxes (and its sidecar).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsView, QMenu

from gradcam_desktop.core.errors import GradCamError
from gradcam_desktop.core.object_sidecar import read_boxes, write_boxes
from gradcam_desktop.ui.explore.box_drag import BoxDrag, pen

__all__ = ["ObjectMarks", "attach"]

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


def attach(window: Any) -> ObjectMarks:
    """Edit → Mark Object / Clear Object Marks on ``window``; the marks follow the picture shown."""
    marks = ObjectMarks(window)
    menu = next((m for m in window.menuBar().findChildren(QMenu) if m.title() == "&Edit"), None)
    if menu is not None:
        menu.addSeparator()
        menu.addActions([marks.mark_action, marks.clear_action])
    window.addAction(marks.mark_action)  # the shortcut works wherever the focus is
    return marks


class ObjectMarks(QObject):
    """The boxes of the picture shown: drawn with the mouse, saved beside it, outlined on it."""

    boxesChanged = Signal(list)  # the boxes of the picture shown, in picture pixels

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.window = window
        self.view: QGraphicsView = window.ui.view
        self._boxes: list[Box] = []
        self._path: str | None = None  # the picture the boxes belong to
        self._outlines: list[QGraphicsRectItem] = []
        self.mark_action = QAction("&Mark Object", window)
        self.mark_action.setObjectName("markObject")
        self.mark_action.setCheckable(True)
        self.mark_action.setShortcut(QKeySequence("M"))
        self.mark_action.setStatusTip("Drag a box around the object on the picture: the caption then says how much "
                                      "of the map falls on it (saved beside the picture)")
        self.mark_action.toggled.connect(self._set_marking)
        self.clear_action = QAction("Clear Object &Marks", window)
        self.clear_action.setObjectName("clearObjectMarks")
        self.clear_action.setStatusTip("Remove the boxes marked on this picture")
        self.clear_action.triggered.connect(lambda _c=False: self.set_boxes([]))
        self.drag = BoxDrag(self.view, self._picture_size, QColor("#ffd400"), self._add_box, z=10.0)
        window.state.subscribe(self._follow_state)
        window.resultShown.connect(self._show_share)

    # -- scripting surface ---------------------------------------------------------------------
    def boxes(self) -> list[Box]:
        """The boxes of the picture shown."""
        return list(self._boxes)

    def set_boxes(self, boxes: list[Box]) -> bool:
        """Replace the picture's boxes and save them beside it; False (and a message) when they cannot be saved."""
        if self._path is None:
            if boxes:
                self.window.show_error("This picture has no file (it was pasted): save it, open the file, "
                                       "then mark the object.")
            return False
        try:
            write_boxes(self._path, boxes)
        except (GradCamError, OSError) as exc:
            self.window.show_error(f"Could not save the object's boxes beside the picture: {exc}")
            return False
        self._boxes = list(boxes)
        self._draw()
        self._show_share(self.window.shown_result())
        self.boxesChanged.emit(self.boxes())
        return True

    def inside_share(self, result: Any = None) -> float | None:
        """The shown map's (or ``result``'s) inside share on the marked object; None when nothing is marked."""
        result = result if result is not None else self.window.shown_result()
        rgb = self._picture_rgb()
        if result is None or not self._boxes or rgb is None:
            return None
        from gradcam_desktop.core.inside_share import inside_share, mask_from_boxes

        size = rgb.shape[:2]
        return inside_share(np.asarray(result.raw), mask_from_boxes(self._boxes, size), size)

    # -- following the picture -----------------------------------------------------------------
    def _follow_state(self, change: str) -> None:
        if change not in ("picture", "pictures", "model"):
            return
        picture = self.window.current_image()
        path = picture.path if picture is not None else None
        if path == self._path:
            return
        self._path = path
        self._boxes = []
        if path is not None:
            try:
                self._boxes = read_boxes(path) or []
            except GradCamError as exc:
                self.window.set_status(str(exc))
        self._draw()

    def _show_share(self, result: Any) -> None:
        share = self.inside_share(result) if result is not None else None
        caption = self.window.ui.caption
        if share is None:
            caption.set_note_line("")
        elif math.isnan(share):
            caption.set_note_line("Inside share: none (the map is empty).")
        else:
            count = len(self._boxes)
            caption.set_note_line(f"Inside share: {share:.0%} of the map's energy falls on the marked object "
                                  f"({count} box{'es' if count != 1 else ''}).")

    # -- drawing -------------------------------------------------------------------------------
    def _set_marking(self, on: bool) -> None:
        self.drag.set_active(on)
        if on:
            self.window.set_status("Mark Object: drag a box around the object (press M again to stop).")

    def _add_box(self, rect: QRectF) -> None:
        self.set_boxes([*self._boxes, (round(rect.left(), 1), round(rect.top(), 1),
                                       round(rect.right(), 1), round(rect.bottom(), 1))])

    def _picture_size(self) -> tuple[int, int] | None:
        rgb = self._picture_rgb()
        return None if rgb is None else (int(rgb.shape[0]), int(rgb.shape[1]))

    def _picture_rgb(self) -> np.ndarray | None:
        picture = self.window.current_image()
        return picture.rgb if picture is not None else None

    def _draw(self) -> None:
        scene = self.view.scene()
        for item in self._outlines:
            scene.removeItem(item)
        self._outlines = []
        for x0, y0, x1, y1 in self._boxes:
            for colour, dashed in ((QColor(0, 0, 0, 200), False), (QColor("#ffd400"), True)):
                item = QGraphicsRectItem(QRectF(x0, y0, x1 - x0, y1 - y0))
                item.setPen(pen(colour, dashed=dashed))
                item.setZValue(10)
                scene.addItem(item)
                self._outlines.append(item)
        self.clear_action.setEnabled(bool(self._boxes))
