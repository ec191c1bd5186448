"""The compare grid (``compare.view.CompareView``) wired into the main window.

View → Compare swaps the picture for the grid (``ui.view_stack``); the grid follows the main
view's opacity, colours, zoom and pan, compares maps around the map the main view shows (its
picture, layer, class, method and score), asks the worker for them with one ``explain_grid``
per grid (answers as the grid job's ``jobPartial(id, ("cell", index, map))``), and a click on a
cell opens that map in the main view.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt

from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui.explore.layer_tree import nodes_by_path
from gradcam_desktop.session.requests import MapSpec

__all__ = ["attach"]


def attach(window: Any) -> None:
    """Connect ``window.ui.compare`` to the window, its worker and the Compare action."""
    ui, worker = window.ui, window.worker
    ui.compare.follow(ui.view)
    # The main view is hidden behind the grid, so it no longer repaints on these: tell the grid.
    ui.alpha_slider.valueChanged.connect(lambda value: ui.compare.set_view_state(alpha=value / 100))
    ui.colormap_box.currentTextChanged.connect(lambda name: ui.compare.set_view_state(colormap=name))
    worker.jobPartial.connect(lambda job, part: _on_partial(ui.compare, job, part), Qt.ConnectionType.QueuedConnection)
    # The grid follows the session: another model (asked for, opened or gone) or no picture left clears it.
    window.state.subscribe(lambda change: _follow_state(window, change))
    window.resultShown.connect(lambda result: _show_current(window, result))
    ui.compare.cellActivated.connect(window.open_map)
    window.acts.compare.toggled.connect(lambda on: ui.view_stack.setCurrentWidget(ui.compare if on else ui.view))


def _follow_state(window: Any, change: str) -> None:
    if change == "model" or (change == "pictures" and not window.state.pictures):
        window.ui.compare.clear()


def _show_current(window: Any, result: MapResult) -> None:
    """The grid compares maps of the picture and map the main view now shows (cheap while hidden)."""
    image, info = window.current_image(), window.model_info()
    if image is None or info is None:
        return
    key = image.key
    layers = [path for path, node in nodes_by_path(info.layers).items() if node.eligible]

    def request_grid(cells: list) -> int:
        return window.worker.explain_grid([MapSpec(key, layer, class_index, method, **score)
                                           for layer, class_index, method, score in cells])

    window.ui.compare.set_current(image.rgb, result, request_grid=request_grid,
                                  class_names=list(info.class_names), layers=layers, methods=info.methods)


def _on_partial(compare: Any, job_id: int, part: tuple) -> None:
    """A grid job's cell (``("cell", index, MapResult | message)``); other jobs' parts are not the grid's."""
    if part[0] == "cell":
        compare.on_cell(job_id, part[1], part[2])
