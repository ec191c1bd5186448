"""The compare view's canvas: headers and cells on a grid, sized to fit, painted from the main
view's compositor code.

One ``compositing.Compositor`` holds the picture (and its pyramid levels) for every cell; a
cell's frame is that compositor's frame for the cell's map, so a cell shows exactly the pixels
the main view shows for the same map, opacity, colours and level. ``visible_region`` turns the
main view's zoom and pan into the part of the picture the cells show.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QHideEvent, QPalette, QShowEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from gradcam_desktop.core.annotate import format_score
from gradcam_desktop.core.overlay import COLORMAPS

from gradcam_desktop.ui.compare.cell import CompareCell
from gradcam_desktop.ui.compare.axes import CellKey, Context, Grid
from gradcam_desktop.ui.explore.compositing import Compositor

__all__ = ["MAX_BOX", "MIN_BOX", "CompareGrid", "visible_region"]

MIN_BOX, MAX_BOX = 96, 720  # a cell picture's longer side, px
_SPIN_MS = 40
_CAPTION_MAX = 260  # a card grows up to this wide for its caption beside a small picture, px
_COMPARE_MODES = ("overlay", "heatmap")


def visible_region(view: Any, picture_hw: tuple[int, int], gap: int) -> QRectF:
    """The part of a ``picture_hw`` picture that ``view`` (an ImageView) shows, both panes of side
    by side (``gap`` px apart); an empty rect when it shows all of it."""
    if not view.has_image():
        return QRectF()
    h, w = picture_hw
    full = QRectF(0, 0, w, h)
    inverse, ok = view.viewportTransform().inverted()
    if not ok:
        return QRectF()
    shown = inverse.mapRect(QRectF(view.viewport().rect()))
    parts = [shown.intersected(full)]
    if view.mode() == "side":
        parts.append(shown.translated(-(w + gap), 0).intersected(full))
    region = QRectF()
    for part in parts:
        if not part.isEmpty():
            region = part if region.isEmpty() else region.united(part)
    return QRectF() if region.isEmpty() or region.contains(full) else region


def duration(seconds: float) -> str:
    """"40 ms", "2.3 s", "1 min 52 s": how long a map took."""
    if seconds < 1.0:
        return f"{max(1, round(seconds * 1000))} ms"
    if seconds < 60.0:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {round(seconds % 60)} s"


class CompareGrid(QWidget):
    """Headers and ``CompareCell``s (objectName "compareCanvas"); ``pixels`` is the shared compositor.

    ``build(grid, context, region)`` makes the cells, ``fit(area, cell_size)`` sizes them,
    ``show_result``/``cell_for`` fill them; ``set_state`` changes opacity, colours, mode and
    region and re-renders only when the pixels change.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareCanvas")
        self.pixels = Compositor()
        self.mode = "overlay"
        self.region = QRectF()  # empty: the whole picture
        self.cells: list[list[CompareCell]] = []
        self.row_labels: list[QLabel] = []
        self.column_labels: list[QLabel] = []
        self._box = QSize()
        self._width = 0
        self._level = 1
        self._angle = 0
        self._layout = QGridLayout(self)
        self._layout.setContentsMargins(12, 10, 12, 12)
        self._layout.setSpacing(8)
        self._layout.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._spinner = QTimer(self)
        self._spinner.setInterval(_SPIN_MS)
        self._spinner.timeout.connect(self._spin)

    # -- cells -----------------------------------------------------------------------------------
    def all_cells(self) -> list[CompareCell]:
        return [cell for row in self.cells for cell in row]

    def cell_for(self, key: CellKey) -> CompareCell | None:
        return next((cell for cell in self.all_cells() if cell.key == key), None)

    def clear(self) -> None:
        """No cells and no headers."""
        for widget in self.all_cells() + self.row_labels + self.column_labels:
            self._layout.removeWidget(widget)
            widget.hide()  # deleted later, from the event loop: hidden now
            widget.deleteLater()
        self.cells, self.row_labels, self.column_labels = [], [], []
        self.update_spinner()

    def build(self, grid: Grid, context: Context) -> list[list[CompareCell]]:
        """Headers and pending cells for ``grid`` (the caller fills them and calls ``fit``)."""
        self.clear()
        for column, value in enumerate(grid.column_values):
            self.column_labels.append(self._header(context, grid.columns, value, Qt.AlignmentFlag.AlignHCenter))
            self._layout.addWidget(self.column_labels[-1], 0, column + 1, Qt.AlignmentFlag.AlignBottom)
        for row, value in enumerate(grid.row_values):
            self.row_labels.append(self._header(context, grid.rows, value, Qt.AlignmentFlag.AlignRight))
            self._layout.addWidget(self.row_labels[-1], row + 1, 0, Qt.AlignmentFlag.AlignRight)
        for row, keys in enumerate(grid.keys(context)):
            cells = []
            for column, key in enumerate(keys):
                cell = CompareCell(key, context.caption(key))
                p = context.probability(key.class_index)
                cell.set_detail(format_score(p, context.head) if p is not None else "")
                cell.set_region(self.region)
                self._layout.addWidget(cell, row + 1, column + 1)
                cells.append(cell)
            self.cells.append(cells)
        return self.cells

    def _header(self, context: Context, dimension: str, value: Any, align: Qt.AlignmentFlag) -> QLabel:
        text, detail = context.label(dimension, value), context.detail(dimension, value)
        label = QLabel()
        label.setObjectName("compareHeader")
        label.setProperty("plainText", f"{text} {detail}".strip())
        fm = label.fontMetrics()
        shown = fm.elidedText(text, Qt.TextElideMode.ElideLeft, 18 * fm.horizontalAdvance("M"))  # keeps a layer's leaf
        html = f"<b>{escape(shown)}</b>"
        if detail:
            muted = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
            html += f"<br><span style='color:{muted}'>{escape(detail)}</span>"
        label.setText(html)
        label.setAlignment(align | Qt.AlignmentFlag.AlignVCenter)
        label.setToolTip(f"{text} {detail}".strip())
        label.setContentsMargins(4, 2, 4, 2)
        return label

    def show_result(self, cell: CompareCell, result: Any, render: bool = True) -> None:
        """``result``'s map in ``cell``, with its probability and time (``render``: composite it now)."""
        cell.set_result(result)
        detail = format_score(result.score, result.prediction.head)
        seconds: float = getattr(result, "seconds", 0.0)
        if not getattr(result, "cached", False) and seconds:
            detail += f" · {duration(seconds)}"
        cell.set_detail(detail, "flat map" if getattr(result, "flat", False) else "")
        if render:
            self.render_cell(cell)

    # -- view state ------------------------------------------------------------------------------
    def set_state(self, *, alpha: float | None = None, colormap: str | None = None,
                  region: QRectF | None = None, mode: str | None = None) -> None:
        """Opacity, colours, mode ("overlay"/"heatmap") and region; None keeps a value."""
        pixels, recomposite = self.pixels, False
        if alpha is not None:
            alpha = min(max(float(alpha), 0.0), 1.0)
            recomposite |= alpha != pixels.alpha
            pixels.alpha = alpha
        if colormap is not None and colormap != pixels.colormap:
            if colormap not in COLORMAPS:
                raise ValueError(f"Unknown colormap {colormap!r}; choose one of: {', '.join(COLORMAPS)}.")
            pixels.colormap, recomposite = colormap, True
        if mode is not None and mode != self.mode:
            if mode not in _COMPARE_MODES:
                raise ValueError(f"Unknown compare mode {mode!r}; choose one of: {', '.join(_COMPARE_MODES)}.")
            self.mode, recomposite = mode, True
        if region is not None and region != self.region:
            self.region = QRectF(region)
            for cell in self.all_cells():
                cell.set_region(self.region)
            recomposite |= self._wanted_level() != self._level
        if recomposite:
            self.recomposite()

    # -- size and pixels -------------------------------------------------------------------------
    def fit(self, area: QSize, cell_size: int | None, force: bool = False) -> None:
        """Cells of ``cell_size`` (a picture's longer side, px), or the largest that fit ``area``."""
        cells = self.all_cells()
        rgb = self.pixels.rgb
        if not cells or rgb is None:
            return
        h, w = rgb.shape[:2]
        extra = cells[0].chrome()
        caption = min(max(cell.caption_width() for cell in cells), _CAPTION_MAX)
        if cell_size is not None:
            scale = cell_size / max(w, h)
        else:
            rows, columns = len(self.cells), len(self.cells[0])
            margins, spacing = self._layout.contentsMargins(), self._layout.spacing()
            header_w = max((label.sizeHint().width() for label in self.row_labels), default=0)
            header_h = max((label.sizeHint().height() for label in self.column_labels), default=0)
            free_w = (area.width() - margins.left() - margins.right() - header_w - spacing * columns) / columns
            free_h = (area.height() - margins.top() - margins.bottom() - header_h - spacing * rows) / rows
            scale = min((free_w - extra.width()) / w, (free_h - extra.height()) / h)
            scale = min(max(scale, MIN_BOX / max(w, h)), MAX_BOX / max(w, h))
            caption = min(caption, int(free_w) - extra.width())  # room for the caption, not a scroll bar
        # Rounded down (with a hair of slack against float error), so a grid that fits gets no scroll bar.
        box = QSize(max(1, int(w * scale + 1e-6)), max(1, int(h * scale + 1e-6)))
        width = max(box.width(), caption)
        if box != self._box or width != self._width or force:
            self._box, self._width = box, width
            for cell in cells:
                cell.set_geometry_of(QSize(w, h), box, width)
        if force or self._wanted_level() != self._level:
            self.recomposite()

    def _wanted_level(self) -> int:
        """The compositor level the main view would use at the cells' scale (see ImageView)."""
        rgb = self.pixels.rgb
        if rgb is None or self._box.isEmpty():
            return 1
        h, w = rgb.shape[:2]
        region = self.region if not self.region.isEmpty() else QRectF(0, 0, w, h)
        scale = min(self._box.width() / region.width(), self._box.height() / region.height())
        return self.pixels.level_for(scale * self.devicePixelRatioF())

    def recomposite(self) -> None:
        self._level = self._wanted_level()
        for cell in self.all_cells():
            self.render_cell(cell)

    # Not named render: that would hide QWidget.render(target), which paints the whole widget.
    def render_cell(self, cell: CompareCell) -> None:
        """The cell's frame: its map as the main view would show it, or the plain picture until it comes."""
        if self.pixels.rgb is None:
            return
        if cell.state() == "ready":
            result: Any = cell.result  # a MapResult once the cell is ready
            self.pixels.set_map(result.display)
            frame = self.pixels.frames(self._level, self.mode)[0]
        else:
            frame = self.pixels.frames(self._level, "original")[0]
        cell.set_frame(frame, self._level)

    def composited(self, cell: CompareCell) -> np.ndarray:
        """What ``cell`` shows at full size as HxWx3 uint8 RGB (the main view's ``composited()``)."""
        if cell.state() != "ready":
            return self.pixels.composited("original")
        result: Any = cell.result  # a MapResult once the cell is ready
        self.pixels.set_map(result.display)
        return self.pixels.composited(self.mode)

    # -- spinner ---------------------------------------------------------------------------------
    def update_spinner(self) -> None:
        """Spin while a visible cell waits for its map."""
        busy = self.isVisible() and any(cell.state() == "pending" for cell in self.all_cells())
        if busy and not self._spinner.isActive():
            self._spinner.start()
        elif not busy:
            self._spinner.stop()

    def _spin(self) -> None:
        self._angle = (self._angle + 24) % 360
        for cell in self.all_cells():
            cell.spin(self._angle)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.update_spinner()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._spinner.stop()
