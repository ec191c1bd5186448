"""The compare view: a grid of maps of one picture — rows and columns chosen from methods, classes
and layers — with the main view's opacity, colours, zoom and pan (objectName "compareView").

Wiring (see ``CompareView``): ``set_current`` with the picture, the main view's ``MapResult`` and
a ``request(layer, class_index, method, **score) -> id`` callable; the worker's ``mapReady`` and
``failed`` into ``on_map`` / ``on_failed``; ``follow(image_view)``; ``cellActivated`` opens a map.
This module keeps the bookkeeping (which request fills which cell, what is known for the
picture); ``compare.grid`` lays the cells out and paints them with the main view's compositor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QHideEvent, QPalette, QResizeEvent, QShowEvent
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from gradcam_desktop.ui.compare.cell import CompareCell
from gradcam_desktop.ui.compare.controls import CompareControls
from gradcam_desktop.ui.compare.grid import CompareGrid, visible_region
from gradcam_desktop.ui.compare.axes import CellKey, Context, Grid, Score

__all__ = ["CompareView"]

log = logging.getLogger(__name__)

PLACEHOLDER = "Open a model and a picture: their maps are compared here, side by side."


class CompareView(QWidget):
    """A grid of maps of the main view's picture; ``cellActivated(layer, class_index, method)`` on a click.

    ``set_current(rgb, result, request | request_grid=, class_names=, layers=)``: the picture
    (HxWx3 uint8), the main view's ``MapResult`` (its layer, class, method and score fix the
    dimension the grid does not show, and its prediction ranks the classes), and how to ask for
    maps, only while the view is visible:

    * ``request(layer, class_index, method, **score) -> id`` per map (score keywords
      ``versus=``/``counterfactual=`` only when set); answers into ``on_map(id, result)`` and
      ``on_failed(id, message)``;
    * or ``request_grid([(layer, class_index, method, score_dict), …]) -> id`` per grid, which
      may cancel the previous grid (every map still missing is asked again); answers into
      ``on_cell(id, index, result | message)``.

    Ids the view did not ask for are ignored, and so are late answers for cells no longer in the
    grid or for another picture. ``clear()`` forgets the picture.

    Axes: ``set_axes(rows, row_values, columns, column_values)`` (dimensions "method", "class",
    "layer"; None values: the defaults), or the control row. View state: ``follow(image_view)``
    tracks the main view's opacity, colours, zoom and pan (its visible part of the picture);
    ``set_view_state(alpha=, colormap=, region=, mode=)`` sets them by hand.
    """

    cellActivated = Signal(str, int, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareView")
        self._rgb: np.ndarray | None = None
        self._source: tuple | None = None  # picture + model identity: results belong to it
        self._request: Callable[..., int] | None = None
        self._request_grid: Callable[[list], int] | None = None
        self._context: Context | None = None
        self._grid = Grid()
        self._results: dict[tuple[CellKey, Score], Any] = {}
        self._failures: dict[tuple[CellKey, Score], str] = {}
        self._pending: dict[int | tuple[int, int], tuple[CellKey, Score]] = {}  # request id or (grid id, cell index)
        self._cell_size: int | None = None
        self._dirty = False
        self._view: Any = None
        self._pull_due = False
        self._fit_due = False
        self._build()

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        self.controls = CompareControls()
        self.rows_picker, self.columns_picker = self.controls.rows, self.controls.columns
        self.swap_button = self.controls.swap
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Plain)
        line.setForegroundRole(QPalette.ColorRole.Mid)
        self.canvas = CompareGrid()
        self._scroll = _ScrollArea()
        self._scroll.resized.connect(self._fit_later)
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setWidget(self.canvas)
        self._placeholder = QLabel(PLACEHOLDER)
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setWordWrap(True)
        self._placeholder.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.controls)
        layout.addWidget(line)
        layout.addWidget(self._scroll, 1)
        layout.addWidget(self._placeholder, 1)
        self.rows_picker.dimensionChosen.connect(lambda d: self._pick_dimension("rows", d))
        self.columns_picker.dimensionChosen.connect(lambda d: self._pick_dimension("columns", d))
        self.rows_picker.valuesChosen.connect(lambda v: self._pick_values("rows", v))
        self.columns_picker.valuesChosen.connect(lambda v: self._pick_values("columns", v))
        self.swap_button.clicked.connect(lambda: self._pick_dimension("rows", self._grid.columns))
        self._show_placeholder(True)
        self._update_controls()

    # -- data ----------------------------------------------------------------------------------
    def set_current(self, rgb: np.ndarray, result: Any, request: Callable[..., int] | None = None, *,
                    request_grid: Callable[[list], int] | None = None, class_names: Sequence[str],
                    layers: Sequence[str], methods: Sequence[str] = ()) -> None:
        """The main view shows ``result`` on ``rgb``: the grid compares maps of that picture around it.

        Maps are asked for with ``request`` (one call per map) or ``request_grid`` (one call per
        grid): see the class's docstring. ``methods``: those the model can run (empty: every method).
        """
        if (request is None) == (request_grid is None):
            raise ValueError("give either request or request_grid")
        context = Context.of(result, class_names, layers, methods)
        source = (getattr(result, "image_key", None), getattr(result, "generation", None), id(rgb))
        self._request, self._request_grid = request, request_grid
        new_picture = source != self._source
        if new_picture:
            self._source, self._rgb = source, rgb  # the array is held, so its id stays unique
            self.canvas.pixels.set_image(rgb)
            self._results.clear()
            self._failures.clear()
            self._pending.clear()  # answers for the previous picture are ignored
        display = getattr(result, "display", None)
        if display is not None and display.shape[:2] == rgb.shape[:2]:
            self._results[(context.current, context.score)] = result  # the main view's map is one of ours
        old = self._grid.keys(self._context) if self._context is not None else None, getattr(self._context, "score", None)
        self._context = context
        self._grid = self._grid.adapted(context)
        if new_picture or old != (self._grid.keys(context), context.score):
            self._invalidate()
        else:
            self._update_controls()

    def clear(self) -> None:
        """No picture (a new model is opening): the placeholder shows; pending answers are ignored."""
        self._rgb = self._source = self._context = self._request = self._request_grid = None
        self.canvas.pixels.clear()
        self._results.clear()
        self._failures.clear()
        self._pending.clear()
        self._rebuild()

    def set_axes(self, rows: str, row_values: Sequence | None, columns: str, column_values: Sequence | None) -> None:
        """Rows and columns: a dimension ("method", "class", "layer") and its values (None: the defaults)."""
        context = self._context
        if context is None:
            raise ValueError("set_current before set_axes")
        grid = Grid().adapted(context).with_dimension("rows", rows, context).with_dimension("columns", columns, context)
        if row_values is not None:
            grid = grid.with_values("rows", row_values, context)
        if column_values is not None:
            grid = grid.with_values("columns", column_values, context)
        self._change(grid)

    def grid(self) -> Grid:
        """The axes shown."""
        return self._grid

    def context(self) -> Context | None:
        """What the main view showed at the last ``set_current``."""
        return self._context

    def cells(self) -> list[list[CompareCell]]:
        """The cells, row by row."""
        return [list(row) for row in self.canvas.cells]

    def row_headers(self) -> list[str]:
        """The row headers' plain texts ("Grad-CAM", "'star' 92.1 %", "last_conv")."""
        return [label.property("plainText") for label in self.canvas.row_labels]

    def column_headers(self) -> list[str]:
        """The column headers' plain texts."""
        return [label.property("plainText") for label in self.canvas.column_labels]

    def pending(self) -> list[int | tuple[int, int]]:
        """The ids of the requests whose answers the grid waits for ((grid id, cell index) with ``request_grid``)."""
        return list(self._pending)

    def composited(self, cell: CompareCell) -> np.ndarray:
        """What ``cell`` shows, at the picture's full size, as HxWx3 uint8 RGB."""
        return self.canvas.composited(cell)

    # -- worker answers --------------------------------------------------------------------------
    def on_map(self, request_id: int, result: Any) -> None:
        """A map from the worker (``mapReady``); ids the grid did not ask for are ignored."""
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            self._answer(entry, result)

    def on_cell(self, grid_id: int, index: int, result: Any) -> None:
        """Cell ``index`` of a ``request_grid`` call (the grid job's ``jobPartial``): a MapResult, or why it failed."""
        entry = self._pending.pop((grid_id, index), None)
        if entry is None:
            return
        if isinstance(result, str):
            self._fail(entry, result)
        else:
            self._answer(entry, result)

    def _answer(self, entry: tuple[CellKey, Score], result: Any) -> None:
        display = getattr(result, "display", None)
        if display is None or self._rgb is None or display.shape[:2] != self._rgb.shape[:2]:
            self._fail(entry, "The map does not fit this picture.")
            return
        self._results[entry] = result
        cell = self.canvas.cell_for(entry[0])
        if cell is not None:
            self.canvas.show_result(cell, result)
        self.canvas.update_spinner()

    def on_failed(self, request_id: int, message: str) -> None:
        """A request failed (``failed``): its cell says why."""
        entry = self._pending.pop(request_id, None)
        if entry is not None:
            self._fail(entry, message)

    def _fail(self, entry: tuple[CellKey, Score], message: str) -> None:
        self._failures[entry] = message
        cell = self.canvas.cell_for(entry[0])
        if cell is not None:
            cell.set_failed(message)
        self.canvas.update_spinner()

    # -- view state ------------------------------------------------------------------------------
    def set_view_state(self, *, alpha: float | None = None, colormap: str | None = None,
                       region: QRectF | tuple | None = None, mode: str | None = None) -> None:
        """Opacity (0..1), colours (a key of COLORMAPS), the part of the picture shown (picture px,
        QRectF or (x, y, w, h); empty: all of it) and "overlay" or "heatmap"; None keeps a value.
        Only a change of the pixels re-composites the cells (a pan only repaints them)."""
        if isinstance(region, tuple):
            region = QRectF(*region)
        self.canvas.set_state(alpha=alpha, colormap=colormap, region=region, mode=mode)

    def alpha(self) -> float:
        return self.canvas.pixels.alpha

    def colormap(self) -> str:
        return self.canvas.pixels.colormap

    def region(self) -> QRectF:
        """The part of the picture the cells show (empty: all of it)."""
        return QRectF(self.canvas.region)

    def follow(self, view: Any) -> None:
        """Track ``view`` (an ``ImageView``): its opacity, colours, mode, zoom and pan, while this view is visible."""
        self._watch(False)
        self._view = view
        if self.isVisible():
            self._watch(True)
            self._pull()

    def set_cell_size(self, size: int | None) -> None:
        """A cell picture's longer side in px (None: as large as the grid fits in the view)."""
        self._cell_size = None if size is None else max(16, int(size))
        self._fit(force=True)

    def _watch(self, on: bool) -> None:
        if self._view is None:
            return
        viewport = self._view.viewport()
        if on:
            viewport.installEventFilter(self)  # the main view repaints on each opacity/colour/zoom/pan change
        else:
            viewport.removeEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.Paint, QEvent.Type.Resize) and not self._pull_due:
            self._pull_due = True
            QTimer.singleShot(0, self, self._pull)  # after the paint: many changes, one update
        return False

    def _pull(self) -> None:
        self._pull_due = False
        view = self._view
        if view is None:
            return
        try:
            mode = "heatmap" if view.mode() == "heatmap" else "overlay"  # "original" would show no map
            region = (visible_region(view, self._rgb.shape[:2], self.canvas.pixels.gap())
                      if self._rgb is not None else QRectF())
            self.set_view_state(alpha=view.alpha(), colormap=view.colormap(), mode=mode, region=region)
        except RuntimeError:  # the view's C++ object is gone (the window is closing)
            self._view = None

    # -- grid ------------------------------------------------------------------------------------
    def _pick_dimension(self, axis: str, dimension: str) -> None:
        if self._context is not None:  # no picture, no grid to change (as in _change)
            self._change(self._grid.with_dimension(axis, dimension, self._context))

    def _pick_values(self, axis: str, values: Sequence) -> None:
        if self._context is not None:
            self._change(self._grid.with_values(axis, values, self._context), keep=axis)

    def _change(self, grid: Grid, keep: str | None = None) -> None:
        if self._context is None or grid == self._grid:
            return
        self._grid = grid
        self._invalidate(keep)

    def _invalidate(self, keep: str | None = None) -> None:
        if self.isVisible():
            self._rebuild(keep)
        else:
            self._dirty = True
            self._update_controls()

    def _rebuild(self, keep: str | None = None) -> None:
        """New cells for the grid; maps not yet known are requested, answers no longer wanted dropped."""
        self._dirty = False
        self._update_controls(keep)
        context = self._context
        if context is None or self._rgb is None:
            self.canvas.clear()
            self._show_placeholder(True)
            return
        self._show_placeholder(False)
        cells = self.canvas.build(self._grid, context)
        wanted = {(cell.key, context.score) for row in cells for cell in row}
        self._pending = {rid: entry for rid, entry in self._pending.items() if entry in wanted}
        asked = set(self._pending.values())
        missing = []
        for cell in (cell for row in cells for cell in row):
            key = cell.key
            cell.activated.connect(lambda key=key: self.cellActivated.emit(key.layer, key.class_index, key.method))
            entry = (key, context.score)
            if entry in self._results:
                self.canvas.show_result(cell, self._results[entry], render=False)
            elif entry in self._failures:
                cell.set_failed(self._failures[entry])
            elif self._request_grid is not None or entry not in asked:
                missing.append(entry)  # a grid request replaces (cancels) the previous one: all of them again
        self._ask(missing)
        self._fit(force=True)  # renders every cell
        self.canvas.update_spinner()

    def _ask(self, entries: list[tuple[CellKey, Score]]) -> None:
        """Request ``entries``: one ``request_grid`` call, or one ``request`` call each."""
        if not entries:
            return
        calls = [(key.layer, key.class_index, key.method, score.kwargs()) for key, score in entries]
        try:
            if self._request_grid is not None:
                grid_id = self._request_grid(calls)
                self._pending.update({(grid_id, index): entry for index, entry in enumerate(entries)})
                return
            request = self._request
            assert request is not None  # set_current takes either request or request_grid
            for entry, (layer, class_index, method, score) in zip(entries, calls):
                self._pending[request(layer, class_index, method, **score)] = entry
        except Exception as exc:  # noqa: BLE001 - the cells say it; the view goes on
            log.exception("compare request failed")
            asked = set(self._pending.values())
            for entry in entries:
                if entry not in asked:
                    self._fail(entry, str(exc) or type(exc).__name__)

    def _update_controls(self, keep: str | None = None) -> None:
        self.controls.show_grid(self._grid, self._context, keep)

    def _show_placeholder(self, on: bool) -> None:
        self._placeholder.setVisible(on)
        self._scroll.setVisible(not on)

    def _fit(self, force: bool = False) -> None:
        self._fit_due = False
        self.canvas.fit(self._scroll.maximumViewportSize(), self._cell_size, force)

    # -- Qt events -------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._watch(True)
        self._pull()
        if self._dirty:
            self._rebuild()
        else:
            self._fit()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self._watch(False)

    def _fit_later(self) -> None:
        if self._cell_size is None and not self._fit_due:
            self._fit_due = True
            QTimer.singleShot(0, self, self._fit)


class _ScrollArea(QScrollArea):
    """Says when its size changes: the cells are sized to what it shows."""

    resized = Signal()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.resized.emit()
