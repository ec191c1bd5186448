"""The compare view on the demo model: maps computed by the real engine, answered as the worker
answers (request ids, ``MapResult`` with a uint8 display map), checked against the core's own
``overlay.blend`` and against the main ``ImageView`` showing the same map.

The fake worker computes each answer with ``GradCam.explain`` when the test says so, so tests
decide when (and whether) an answer arrives.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QGraphicsView

from gradcam_desktop.core import overlay
from gradcam_desktop.core.annotate import format_probability
from gradcam_desktop.core.overlay import blend
from gradcam_desktop.ui.compare.axes import Context, Grid, method_title
from gradcam_desktop.ui.compare.view import CompareView
from gradcam_desktop.ui.explore.image_view import ImageView
from gradcam_desktop.session.results import display_uint8

PICTURES = Path(__file__).resolve().parents[2] / "images"


@pytest.fixture(scope="module")
def demo():
    """The demo model's engine, its class names and eligible layers, and two sample pictures."""
    from gradcam_desktop.core.gradcam import GradCam
    from gradcam_desktop.core.images import load_image
    from gradcam_desktop.core.layers import eligible_paths
    from gradcam_desktop.core.models import load_model

    loaded = load_model("demo")
    engine = GradCam(loaded)
    pictures = [load_image(PICTURES / name) for name in ("two_objects_circle_star.png", "square.png")]
    return engine, list(loaded.class_names), eligible_paths(loaded.model), pictures


def shown_map(engine, picture, layer=None, class_index=None, method="gradcam", **score):
    """A map as the worker sends it: the engine's MapResult with the uint8 display map at picture size."""
    result = engine.explain(picture, layer, class_index, method, **score)
    display, flat = display_uint8(overlay, result.raw, picture.rgb.shape[:2])
    return result.with_(display=display, flat=flat, image_key=picture.name, generation=1)


class FakeWorker:
    """``request(layer, class_index, method, **score) -> id``; ``answer(id)`` computes and delivers it."""

    def __init__(self, engine, picture, view: CompareView) -> None:
        self.engine, self.picture, self.view = engine, picture, view
        self.calls: dict[int, tuple] = {}
        self._ids = itertools.count(100)

    def request(self, layer, class_index, method, **score):
        rid = next(self._ids)
        self.calls[rid] = (layer, class_index, method, score)
        return rid

    def answer(self, rid: int) -> None:
        """As the worker: ``mapReady`` with the map, or ``failed`` with the error's one line."""
        layer, class_index, method, score = self.calls[rid]
        try:
            result = shown_map(self.engine, self.picture, layer, class_index, method, **score)
        except Exception as exc:  # noqa: BLE001 - the worker sends every error as failed(id, message)
            self.view.on_failed(rid, str(exc))
            return
        self.view.on_map(rid, result.with_(request_id=rid))

    def answer_all(self) -> None:
        for rid in list(self.calls):
            self.answer(rid)


def rgb_of(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w, stride = image.height(), image.width(), image.bytesPerLine()
    return np.frombuffer(image.constBits(), np.uint8, stride * h).reshape(h, stride)[:, : 3 * w].reshape(h, w, 3).copy()


def cell_pixels(cell) -> np.ndarray:
    """The picture part of a cell, as painted on screen."""
    rect = cell.image_rect().toRect()
    return rgb_of(cell.grab().toImage())[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1]


@pytest.fixture
def setup(qtbot, demo):
    """A shown compare view on the two-object picture, with the main view's Grad-CAM map."""
    engine, names, layers, pictures = demo
    picture = pictures[0]
    view = CompareView()
    qtbot.addWidget(view)
    view.resize(1000, 700)
    worker = FakeWorker(engine, picture, view)
    main = shown_map(engine, picture)
    view.show()
    qtbot.waitExposed(view)
    view.set_current(picture.rgb, main, worker.request, class_names=names, layers=layers)
    return view, worker, main, picture


def top_classes(result, n=3):
    return [int(i) for i in np.argsort(-result.prediction.probabilities, kind="stable")[:n]]


def test_grid_has_a_cell_per_row_and_column_with_their_labels(setup, demo):
    view, worker, main, _picture = setup
    names = demo[1]
    methods, classes = ["gradcam", "gradcam++"], top_classes(main)
    view.set_axes("method", methods, "class", classes)
    cells = view.cells()
    assert [len(row) for row in cells] == [3, 3]  # 2 methods × 3 classes
    assert view.row_headers() == ["Grad-CAM", "Grad-CAM++"]
    p = main.prediction.probabilities
    assert view.column_headers() == [f"'{names[c]}' {format_probability(p[c])}" for c in classes]
    for method, row in zip(methods, cells):
        for class_index, cell in zip(classes, row):
            assert (cell.key.layer, cell.key.class_index, cell.key.method) == (main.layer, class_index, method)
            assert cell.caption() == f"{method_title(method)} · '{names[class_index]}' · {main.layer}"
            assert cell.detail().startswith(format_probability(p[class_index]))
    # One request per cell, except the main view's own map, which the grid already has; the first
    # (default) grid's requests for maps still shown are not asked again, the others are dropped.
    waiting = sorted(worker.calls[rid][:3] for rid in view.pending())
    want = sorted((main.layer, c, m) for m in methods for c in classes if (c, m) != (main.class_index, "gradcam"))
    assert waiting == want
    asked = [call[:3] for call in worker.calls.values()]
    assert len(asked) == len(set(asked)) and set(want) <= set(asked)
    assert all(score == {} for *_rest, score in worker.calls.values())
    assert cells[0][0].state() == "ready" and cells[1][0].state() == "pending"


def test_cells_show_the_pixels_of_the_main_view_and_of_blend(setup, demo, qtbot):
    """The spec's "the compare grid renders the same maps as single views": each cell on screen
    equals the main ImageView showing that map at 1:1, and core.overlay.blend of an independently
    computed map, for two opacities and colour maps."""
    view, worker, main, picture = setup
    engine = demo[0]
    classes = top_classes(main, 2)
    view.set_axes("method", ["gradcam", "layercam"], "class", classes)
    h, w = picture.rgb.shape[:2]
    view.set_cell_size(max(h, w))  # one picture pixel per screen pixel
    worker.answer_all()
    single = ImageView()
    qtbot.addWidget(single)
    single.resize(w + 40, h + 40)
    single.show()
    qtbot.waitExposed(single)
    single.set_image(picture.rgb)
    single.actual_size()
    for alpha, colormap in ((0.5, "jet"), (0.8, "viridis")):
        view.set_view_state(alpha=alpha, colormap=colormap)
        single.set_alpha(alpha)
        single.set_colormap(colormap)
        for row in view.cells():
            for cell in row:
                key = cell.key
                reference = shown_map(engine, picture, key.layer, key.class_index, key.method)
                want = blend(picture.rgb, reference.display, alpha, colormap)
                shown = cell_pixels(cell)
                np.testing.assert_array_equal(shown, want)
                single.set_map(reference.display)
                top_left = single.mapFromScene(0.25, 0.25)
                on_screen = rgb_of(single.viewport().grab().toImage())
                np.testing.assert_array_equal(shown, on_screen[top_left.y():top_left.y() + h,
                                                               top_left.x():top_left.x() + w])
                np.testing.assert_array_equal(view.composited(cell), single.composited())


def test_cells_follow_the_main_views_opacity_colours_zoom_and_pan(setup, demo, qtbot):
    view, worker, main, picture = setup
    view.set_axes("method", ["gradcam"], "class", top_classes(main, 2))
    worker.answer_all()
    single = ImageView()
    qtbot.addWidget(single)
    single.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    single.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    single.resize(200, 150)  # the picture's 4:3, so a 200-px cell shows the visible part 1:1
    single.show()
    qtbot.waitExposed(single)
    single.set_image(picture.rgb)
    single.set_map(main.display)
    view.follow(single)
    single.set_alpha(0.3)
    single.set_colormap("turbo")
    qtbot.waitUntil(lambda: view.alpha() == 0.3 and view.colormap() == "turbo")
    cell = view.cells()[0][1]
    key = cell.key
    want = blend(picture.rgb, shown_map(demo[0], picture, key.layer, key.class_index).display, 0.3, "turbo")
    h, w = picture.rgb.shape[:2]
    view.set_cell_size(max(h, w))
    np.testing.assert_array_equal(cell_pixels(cell), want)  # fitted: all of the picture
    assert view.region().isEmpty()
    single.actual_size()
    single.horizontalScrollBar().setValue(single.horizontalScrollBar().minimum() + 130)
    single.verticalScrollBar().setValue(single.verticalScrollBar().minimum() + 90)
    left, top = single.mapToScene(0, 0).x(), single.mapToScene(0, 0).y()
    assert single.dragMode() == QGraphicsView.DragMode.ScrollHandDrag and single.zoom() == 1.0
    qtbot.waitUntil(lambda: view.region() == QRectF(left, top, 200, 150))
    view.set_cell_size(200)
    x, y = int(left), int(top)
    assert (x, y) == (left, top) and x > 0 and y > 0
    np.testing.assert_array_equal(cell_pixels(cell), want[y:y + 150, x:x + 200])


def test_a_click_on_a_cell_opens_its_map(setup, qtbot):
    view, worker, main, _picture = setup
    classes = top_classes(main)
    view.set_axes("class", classes, "method", ["gradcam", "hirescam"])
    cells = view.cells()
    for row, column in ((1, 1), (2, 0)):
        cell = cells[row][column]
        with qtbot.waitSignal(view.cellActivated) as blocker:
            QTest.mouseClick(cell, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, cell.rect().center())
        assert blocker.args == [main.layer, classes[row], ["gradcam", "hirescam"][column]]
    # A press that ends outside the cell is no click.
    cell = cells[0][0]
    with qtbot.assertNotEmitted(view.cellActivated):
        QTest.mousePress(cell, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(5, 5))
        QTest.mouseRelease(cell, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, QPoint(-20, -20))


def test_late_answers_for_a_replaced_grid_are_ignored(setup, demo):
    view, worker, main, picture = setup
    engine, names, layers, pictures = demo
    classes = top_classes(main, 2)
    view.set_axes("method", ["gradcam", "gradcam++"], "class", classes)
    first = dict(worker.calls)
    kept = next(rid for rid, call in first.items() if call[2] == "gradcam")  # still in the next grid
    dropped = [rid for rid, call in first.items() if call[2] == "gradcam++"]
    view.set_axes("method", ["gradcam", "xgradcam"], "class", classes)
    for rid in dropped:
        worker.answer(rid)  # cells no longer shown: ignored
    assert not any(cell.key.method == "gradcam++" for row in view.cells() for cell in row)
    assert set(view.pending()).isdisjoint(dropped) and kept in view.pending()
    worker.answer(kept)  # the same map is still wanted: shown
    cell = next(c for row in view.cells() for c in row if (c.key.layer, c.key.class_index, c.key.method)
                == first[kept][:3])
    assert cell.state() == "ready"
    # A new picture: every answer still to come is for the old one.
    old = list(view.pending())
    assert old
    other = pictures[1]
    view.set_current(other.rgb, shown_map(engine, other), FakeWorker(engine, other, view).request,
                     class_names=names, layers=layers)
    for rid in old:
        worker.answer(rid)  # maps of the first picture
    states = [cell.state() for row in view.cells() for cell in row]
    assert states.count("ready") == 1  # the main view's map of the new picture, nothing else
    assert all(cell.result.image_key == other.name for row in view.cells() for cell in row if cell.result)
    assert set(view.pending()).isdisjoint(old)


def test_a_failed_map_says_why_and_others_still_arrive(setup):
    view, worker, main, _picture = setup
    view.set_axes("method", ["gradcam", "eigencam"], "class", top_classes(main, 2))
    ids = list(worker.calls)
    view.on_failed(ids[0], "That layer has no spatial grid.")
    failed = [cell for row in view.cells() for cell in row if cell.state() == "failed"]
    assert [cell.message() for cell in failed] == ["That layer has no spatial grid."]
    view.on_failed(12345, "not ours")  # another request's failure changes nothing
    for rid in ids[1:]:
        worker.answer(rid)
    assert sum(cell.state() == "ready" for row in view.cells() for cell in row) == 3


def test_maps_are_asked_for_only_while_the_view_is_visible(qtbot, demo):
    engine, names, layers, pictures = demo
    view = CompareView()
    qtbot.addWidget(view)
    worker = FakeWorker(engine, pictures[0], view)
    view.set_current(pictures[0].rgb, shown_map(engine, pictures[0]), worker.request, class_names=names,
                     layers=layers)
    assert worker.calls == {}
    view.show()
    qtbot.waitExposed(view)
    rows, columns = view.grid().shape
    assert rows * columns - 1 == len(worker.calls) > 0


def test_the_score_goes_with_every_request_and_caption(setup, demo):
    """"Why c rather than B": every cell explains y_c − y_B, asked as the worker's keywords."""
    view, worker, main, picture = setup
    engine, names, layers, _pictures = demo
    top = top_classes(main, 3)
    versus = shown_map(engine, picture, None, top[0], versus=top[1])
    worker.calls.clear()
    view.set_current(picture.rgb, versus, worker.request, class_names=names, layers=layers)
    view.set_axes("method", ["gradcam"], "class", [top[0], top[2]])
    calls = list(worker.calls.values())
    assert calls and all(score == {"versus": top[1]} for *_rest, score in calls)
    worker.answer_all()
    cell = view.cells()[0][1]
    assert cell.caption() == f"Grad-CAM · '{names[top[2]]}' vs '{names[top[1]]}' · {main.layer}"
    assert cell.result.versus_index == top[1]


def test_dimensions_swap_and_layer_rows_come_from_the_model(setup, demo):
    view, _worker, main, _picture = setup
    layers = demo[2]
    view.set_axes("layer", None, "method", ["gradcam"])
    grid = view.grid()
    assert grid.fixed == "class" and grid.row_values == tuple(layers[-3:]) and layers[-1] == main.layer
    assert view.row_headers() == list(layers[-3:])
    view.swap_button.click()
    assert (view.grid().rows, view.grid().columns) == ("method", "layer")
    assert view.column_headers() == list(layers[-3:])
    # The dimension combo: choosing the columns' dimension for the rows swaps them back.
    box = view.rows_picker.box
    box.setCurrentIndex(box.findData("layer"))
    box.activated.emit(box.currentIndex())
    assert (view.grid().rows, view.grid().columns) == ("layer", "method")
    # The values menu: a click on another method adds a column, and the menu stays open for more.
    menu = view.columns_picker.menu
    menu.popup(view.columns_picker.button.mapToGlobal(QPoint(0, view.columns_picker.button.height())))
    action = next(a for a in menu.actions() if a.data() == "hirescam")
    QTest.mouseClick(menu, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     menu.actionGeometry(action).center())
    assert action.isChecked() and menu.isVisible()
    assert view.grid().column_values == ("gradcam", "hirescam")
    assert [len(row) for row in view.cells()] == [2, 2, 2]
    assert view.columns_picker.button.text() == "2 methods"
    menu.close()


def test_classes_follow_a_new_picture_until_the_user_picks_them():
    """Automatic axes take the new picture's top classes; chosen ones stay."""
    from gradcam_desktop.ui.compare.axes import CellKey

    def context(probabilities):
        return Context(class_names=("a", "b", "c", "d"), layers=("l1", "l2"), current=CellKey("l2", 0, "gradcam"),
                       probabilities=tuple(probabilities))

    first, second = context([0.1, 0.6, 0.2, 0.1]), context([0.5, 0.05, 0.05, 0.4])
    grid = Grid().adapted(first)
    assert grid.column_values == (1, 2, 0) and grid.rows == "method"
    assert grid.adapted(second).column_values == (0, 3, 1)
    chosen = grid.with_values("columns", [3, 1], first)
    assert chosen.column_values == (1, 3)  # menu order: by probability
    assert chosen.adapted(second).column_values == (1, 3)


class FakeGridWorker:
    """``request_grid([(layer, class, method, score), …]) -> id`` as the worker's ``explain_grid``:
    a newer grid cancels the older one; ``answer(id, index)`` sends the grid job's cell (``on_cell``)."""

    def __init__(self, engine, picture, view: CompareView) -> None:
        self.engine, self.picture, self.view = engine, picture, view
        self.grids: dict[int, list[tuple]] = {}
        self._ids = itertools.count(500)

    def request_grid(self, cells):
        gid = next(self._ids)
        self.grids[gid] = list(cells)
        return gid

    def answer(self, gid: int, index: int) -> None:
        layer, class_index, method, score = self.grids[gid][index]
        try:
            result = shown_map(self.engine, self.picture, layer, class_index, method, **score)
        except Exception as exc:  # noqa: BLE001 - a failed cell carries the message instead of a map
            self.view.on_cell(gid, index, str(exc))
            return
        self.view.on_cell(gid, index, result.with_(request_id=gid))


def test_a_grid_request_asks_for_every_missing_map_at_once(qtbot, demo):
    """With ``request_grid`` a new grid replaces (cancels) the previous one, so it asks again for the
    maps still missing; answers of the old grid for maps still shown are welcome, others ignored."""
    engine, names, layers, pictures = demo
    picture = pictures[0]
    view = CompareView()
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    worker = FakeGridWorker(engine, picture, view)
    main = shown_map(engine, picture)
    top = top_classes(main)
    view.set_current(picture.rgb, main, request_grid=worker.request_grid, class_names=names, layers=layers)
    view.set_axes("method", ["gradcam", "gradcam++"], "class", top[:2])
    second = list(worker.grids)[-1]
    assert sorted(worker.grids[second]) == sorted(
        (main.layer, c, m, {}) for m in ("gradcam", "gradcam++") for c in top[:2] if (c, m) != (top[0], "gradcam"))
    view.set_axes("method", ["gradcam", "gradcam++"], "class", top[1:3])
    third = list(worker.grids)[-1]
    assert sorted(worker.grids[third]) == sorted((main.layer, c, m, {}) for m in ("gradcam", "gradcam++")
                                                 for c in top[1:3])
    for index in range(len(worker.grids[second])):
        worker.answer(second, index)  # the old grid: top[0]'s cells are gone, top[1]'s still wanted
    states = {(c.key.class_index, c.key.method): c.state() for row in view.cells() for c in row}
    assert states == {(top[1], "gradcam"): "ready", (top[1], "gradcam++"): "ready",
                      (top[2], "gradcam"): "pending", (top[2], "gradcam++"): "pending"}
    for index in range(len(worker.grids[third])):
        worker.answer(third, index)
    assert all(c.state() == "ready" for row in view.cells() for c in row)
    view.on_cell(third, 0, "late")  # already answered: nothing changes
    assert all(c.state() == "ready" for row in view.cells() for c in row)
