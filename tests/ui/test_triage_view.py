"""Issue 9 in the window: the Triage view (table ``triageTable``, matrix ``confusionMatrix``) and its job.

Widget tests feed hand-made ``TriageRow``s whose right answers are counted here by hand (sorted
lists, filtered lists, counts per cell); window tests run the real job on the demo model over a
labelled folder of generated pictures (``core.demo_data``) and compare the streamed rows with
``core.triage.triage`` run here on a second engine with the same batch size. Equality is exact:
both are the same compiled float32 graph fed the same bytes in the same batch shapes (the core
pads batches to one size), and TensorFlow's CPU kernels are deterministic for a given shape
(the premise of tests/ui/test_trust_panel.py). Clicks are real mouse events on the header
section, the matrix cell and the table row.
"""

from __future__ import annotations

import dataclasses

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from ui_window import demo_window
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from gradcam_desktop.core.triage import TriageRow
from gradcam_desktop.ui.triage.table import PROBABILITY, TRUE, TriageTableModel
from gradcam_desktop.ui.triage.view import TriageView

NAMES = ["circle", "square", "triangle", "star"]


def _row(name: str, true: int, probabilities: list[float] | None, error: str = "") -> TriageRow:
    """A row as the core makes it, from a probability vector (None: an unreadable picture)."""
    if probabilities is None:
        return TriageRow(f"/pics/{name}", true, NAMES[true], None, "", math.nan, math.nan, False, math.nan, error)
    p = np.asarray(probabilities, dtype=float)
    predicted = int(np.argmax(p))
    others = np.delete(p, true)
    return TriageRow(f"/pics/{name}", true, NAMES[true], predicted, NAMES[predicted], float(p[predicted]),
                     float(p[true]), predicted == true, float(p[true] - others.max()))


def _rows() -> list[TriageRow]:
    return [
        _row("a_circle.png", 0, [0.90, 0.05, 0.03, 0.02]),
        _row("b_circle.png", 0, [0.30, 0.60, 0.05, 0.05]),  # circle → square
        _row("c_square.png", 1, [0.10, 0.80, 0.05, 0.05]),
        _row("d_square.png", 1, [0.50, 0.45, 0.03, 0.02]),  # square → circle
        _row("e_star.png", 3, [0.05, 0.05, 0.15, 0.75]),
        _row("f_star.png", 3, [0.02, 0.55, 0.03, 0.40]),  # star → square
        _row("g_triangle.png", 2, [0.01, 0.01, 0.97, 0.01]),
        _row("h_broken.png", 2, None, "h_broken.png is not an image Pillow can read (.png)."),
        _row("i_circle.png", 0, [0.20, 0.70, 0.05, 0.05]),  # circle → square
    ]


@pytest.fixture
def view(qtbot):
    widget = TriageView()
    qtbot.addWidget(widget)
    widget.resize(1100, 420)
    widget.show()
    qtbot.waitExposed(widget)
    widget.start(NAMES)
    widget.add_rows(_rows()[:4])
    widget.add_rows(_rows()[4:])
    return widget


def _names(rows) -> list[str]:
    return [Path(r.image).name for r in rows]


def _click_header(qtbot, view: TriageView, column: int) -> None:
    header = view.table.horizontalHeader()
    x = header.sectionViewportPosition(column) + header.sectionSize(column) // 2
    QTest.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(x, header.height() // 2))


def test_model_is_a_valid_qt_model(qtmodeltester):
    model = TriageTableModel()
    model.append_rows(_rows())
    qtmodeltester.check(model)


def test_rows_hold_paths_and_numbers_and_show_them(view):
    model = view.model
    assert model.rowCount() == 9
    index = next(r for r in range(9) if model.row_at(r).image.endswith("b_circle.png"))
    texts = [model.index(index, c).data() for c in range(model.columnCount())]
    assert texts[1:] == ["b_circle.png", "circle", "square", "60.0 %", "30.0 %", "✗", "-0.300"]
    broken = next(r for r in range(9) if model.row_at(r).error)
    assert model.index(broken, 6).data() == "!" and model.index(broken, 4).data() == ""


def test_header_click_sorts_by_that_column(view, qtbot):
    rows = _rows()
    # Opens sorted by margin, worst first; the unreadable row (no margin) sorts before every number.
    expected = [r for r in rows if r.error] + sorted((r for r in rows if not r.error), key=lambda r: r.margin)
    assert _names(view.visible_rows()) == _names(expected)
    _click_header(qtbot, view, PROBABILITY)
    order = view.table.horizontalHeader().sortIndicatorOrder()
    by_probability = sorted((r for r in rows if not r.error), key=lambda r: r.probability,
                            reverse=order == Qt.SortOrder.DescendingOrder)
    shown = [r for r in view.visible_rows() if not r.error]
    assert view.table.horizontalHeader().sortIndicatorSection() == PROBABILITY
    assert _names(shown) == _names(by_probability)
    _click_header(qtbot, view, PROBABILITY)  # again: the other way round
    assert _names([r for r in view.visible_rows() if not r.error]) == _names(by_probability[::-1])
    _click_header(qtbot, view, TRUE)
    names = [r.true_name for r in view.visible_rows()]
    assert names in (sorted(names), sorted(names, reverse=True)) and len(set(names)) == 4


def test_filters_mistakes_class_text_and_probability(view, qtbot):
    rows = _rows()
    view.mistakes.click()  # a real click on the check box
    assert set(_names(view.visible_rows())) == {_names([r])[0] for r in rows if r.error or not r.correct}
    view.mistakes.click()
    view.class_box.setCurrentIndex(view.class_box.findData(3))  # star: true or predicted
    assert set(_names(view.visible_rows())) == {"e_star.png", "f_star.png"}
    view.class_box.setCurrentIndex(0)
    qtbot.keyClicks(view.search, "CIRC")
    assert set(_names(view.visible_rows())) == {"a_circle.png", "b_circle.png", "i_circle.png", "d_square.png"}
    view.search.clear()
    view.low.setValue(55)
    view.high.setValue(80)
    assert set(_names(view.visible_rows())) == {_names([r])[0] for r in rows
                                                  if not r.error and 0.55 <= r.probability <= 0.80}
    view.low.setValue(0)
    view.high.setValue(100)
    assert len(view.visible_rows()) == len(rows)


def test_confusion_matrix_counts_and_click_filters(view, qtbot):
    rows = _rows()
    expected = np.zeros((4, 4), dtype=int)
    for r in rows:
        if not r.error:
            expected[r.true_index, r.predicted_index] += 1
    assert np.array_equal(view.matrix.matrix_model.matrix(), expected)
    model = view.matrix.matrix_model
    assert model.index(0, 1).data() == "2" and model.index(0, 2).data() == ""
    # Counts are coloured by size: the busier mistake cell is further from the base colour.
    base = model.base
    def distance(r, c):
        colour = model.index(r, c).data(Qt.ItemDataRole.BackgroundRole)
        return abs(colour.red() - base.red()) + abs(colour.green() - base.green()) + abs(colour.blue() - base.blue())
    assert distance(0, 1) > distance(1, 0) > distance(0, 2) == 0

    rect = view.matrix.cell_rect(0, 1)  # true circle, predicted square
    QTest.mouseClick(view.matrix.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert set(_names(view.visible_rows())) == {"b_circle.png", "i_circle.png"}
    assert view.show_all.isEnabled()
    QTest.mouseClick(view.matrix.viewport(), Qt.MouseButton.LeftButton, pos=view.matrix.cell_rect(3, 1).center())
    assert _names(view.visible_rows()) == ["f_star.png"]
    QTest.mouseClick(view.matrix.viewport(), Qt.MouseButton.LeftButton, pos=view.matrix.cell_rect(3, 1).center())
    assert len(view.visible_rows()) == len(rows)  # the same cell again: all
    QTest.mouseClick(view.matrix.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    view.show_all.click()
    assert len(view.visible_rows()) == len(rows) and not view.show_all.isEnabled()


def test_thumbnails_are_made_off_the_ui_thread_and_bounded(qtbot, tmp_path):
    from gradcam_desktop.ui.triage.thumbnails import ThumbnailCache

    paths = []
    for i in range(12):
        path = tmp_path / f"p{i}.png"
        cv2.imwrite(str(path), np.full((300, 200, 3), 20 * i, dtype=np.uint8))
        paths.append(str(path))
    side = 32
    cache = ThumbnailCache(side=side, max_bytes=5 * side * side * 4)
    assert cache.get(paths[0]) is None  # never decoded by the caller
    with qtbot.waitSignal(cache.ready, timeout=10_000):
        pass
    pixmap = cache.get(paths[0])
    assert pixmap is not None and max(pixmap.width(), pixmap.height()) == side
    assert (pixmap.width(), pixmap.height()) == (round(side * 200 / 300), side)
    for path in paths:
        cache.get(path)
    qtbot.waitUntil(lambda: not cache.pending(), timeout=10_000)
    assert 0 < cache.nbytes <= cache.max_bytes


def test_csv_and_png_export(view, tmp_path):
    from gradcam_desktop.ui.triage.wiring import export_matrix, export_table

    table, picture = tmp_path / "triage.csv", tmp_path / "confusion.png"
    export_table(view, table)
    export_matrix(view, picture)
    with open(table, newline="", encoding="utf-8") as handle:
        written = list(csv.DictReader(handle))
    rows = _rows()
    assert [w["image"] for w in written] == [r.image for r in rows]  # every row, in the order predicted
    assert [w["correct"] for w in written] == ["" if r.error else str(r.correct).lower() for r in rows]
    assert [float(w["probability"]) for w in written if w["probability"]] == \
        pytest.approx([r.probability for r in rows if not r.error], abs=0)
    image = cv2.imread(str(picture))
    grab = view.matrix.grab()
    assert image is not None and image.shape[:2] == (grab.height(), grab.width())


# -- the window: the job on the demo model ---------------------------------------------------------
TIMEOUT = 60_000


def _labelled_folder(root: Path, per_class: int, seed: int = 0) -> list[Path]:
    from gradcam_desktop.core.demo_data import CLASS_NAMES, make_sample

    rng = np.random.default_rng(seed)
    paths = []
    for index, name in enumerate(CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            rgb, _cls, _mask = make_sample(rng, 64, index)
            path = folder / f"{name}_{k:03d}.png"
            cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            paths.append(path)
    (root / "circle" / "broken.png").write_bytes(b"not a picture at all")
    return paths


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    _labelled_folder(root, 10)
    return root


@pytest.fixture
def window(qtbot):
    return demo_window(qtbot, 1280, 900)


def _run(window, qtbot, source, batch):
    """Start triage; returns (job id, [(rows in the table, job still running) per batch], summary)."""
    seen = []
    controller = window.triage
    controller.feed.rows.connect(lambda _id, _rows: seen.append((controller.view.model.rowCount(),
                                                                 controller.job() is not None)))
    with qtbot.waitSignal(window.worker.jobFinished, timeout=TIMEOUT,
                          check_params_cb=lambda job, _s: job == controller_job[0]) as finished:
        controller_job = [controller.open(source, batch=batch)]
    return controller_job[0], seen, finished.args[1]


def test_rows_stream_in_and_match_the_core(window, qtbot, labelled, engine):
    from gradcam_desktop.core.triage import confusion_matrix, read_labels, triage

    job, seen, summary = _run(window, qtbot, labelled, batch=8)
    view = window.triage.view
    labels = read_labels(labelled, list(engine.class_names))
    expected = list(triage(engine, labels.pictures, batch=8))
    assert summary["cancelled"] is False and summary["rows"] == len(expected) == 41
    assert len(seen) == math.ceil(41 / 8)
    assert seen[0][0] < 41 and seen[0][1]  # rows were in the table while the job still ran
    # every row, in order, exactly as the core makes them (compared as CSV rows: NaN != NaN)
    assert [r.csv_row() for r in view.rows()] == [r.csv_row() for r in expected]
    broken = [r for r in view.rows() if r.error]
    assert len(broken) == 1 and broken[0].image.endswith("broken.png")
    assert np.array_equal(view.matrix.matrix_model.matrix(), confusion_matrix(expected, 4))
    assert not view.cancel_button.isEnabled() and "Done" in view.status.text()


def test_cancel_stops_the_job(window, qtbot, labelled):
    controller = window.triage
    view = controller.view
    controller.feed.rows.connect(lambda *_a: view.cancel_button.isEnabled() and view.cancel_button.click())
    with qtbot.waitSignal(window.worker.jobFinished, timeout=TIMEOUT) as finished:
        job = controller.open(labelled, batch=1)
    assert finished.args[0] == job and finished.args[1]["cancelled"] is True
    count = view.model.rowCount()
    assert 1 <= count < 41
    qtbot.wait(300)
    assert view.model.rowCount() == count  # nothing after the end
    assert "Cancelled" in view.status.text()


def test_clicking_a_row_shows_its_picture_and_map(window, qtbot, labelled):
    _run(window, qtbot, labelled, batch=16)
    view = window.triage.view
    view.mistakes.setChecked(False)
    table = view.table
    proxy_row = 3
    row = view.visible_rows()[proxy_row]
    if row.error:
        proxy_row, row = proxy_row + 1, view.visible_rows()[proxy_row + 1]
    rect = table.visualRect(view.proxy.index(proxy_row, 1))
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT,
                          check_params_cb=lambda r: r.class_index == row.predicted_index) as shown:
        QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    image = window.current_image()
    assert Path(image.path).resolve() == Path(row.image).resolve()
    result = shown.args[0]
    assert result.display.shape == image.rgb.shape[:2]
    assert window.ui.view.has_image()
    # The toggle: the map of the true class of the same picture.
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT,
                          check_params_cb=lambda r: r.class_index == row.true_index):
        view.explain_box.setCurrentIndex(view.explain_box.findData("true"))
    # A second click on the same row opens nothing new.
    count = len(window.images())
    rect = table.visualRect(view.proxy.index(view.visible_rows().index(row), 1))  # the window's layout may have moved
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert len(window.images()) == count, [i.path for i in window.images()]


# -- decoded pictures: a cache bounded by bytes ----------------------------------------------------
def test_picture_cache_stays_under_its_bound_and_decodes_again(tmp_path):
    from gradcam_desktop.core.images import load_image
    from gradcam_desktop.session.picture_cache import PictureCache

    size = 60 * 80 * 3  # bytes of one decoded picture
    cache = PictureCache(max_bytes=5 * size)
    paths = []
    for i in range(40):
        path = tmp_path / f"p{i:02d}.png"
        cv2.imwrite(str(path), np.random.default_rng(i).integers(0, 256, (60, 80, 3), dtype=np.uint8))
        paths.append(path)
        cache.put(f"k{i}", load_image(path), str(path))
        assert cache.nbytes <= cache.max_bytes
    assert cache.nbytes == 5 * size and len(cache.decoded_keys()) == 5 and len(cache) == 40
    assert cache.decoded_keys() == [f"k{i}" for i in range(35, 40)]  # the most recent ones
    again = cache.get("k0")  # dropped long ago: decoded again from its path, equal pixels
    assert cache.decodes == 1 and np.array_equal(again.rgb, load_image(paths[0]).rgb)
    assert cache.nbytes == 5 * size and "k35" not in cache.decoded_keys()
    pasted = load_image(paths[1].read_bytes(), name="clipboard")
    cache.put("pasted", pasted, paths[1].read_bytes())  # bytes are a source too
    for i in range(2, 8):
        cache.get(f"k{i}")
    assert "pasted" not in cache.decoded_keys() and np.array_equal(cache["pasted"].rgb, pasted.rgb)
    paths[7].unlink()
    assert cache.get("k7") is not None  # still decoded: its file is not needed
    for i in range(20, 26):
        cache.get(f"k{i}")
    assert cache.get("k7") is None  # gone from disk and from the cache: None, not an exception
    assert cache.nbytes <= cache.max_bytes


def test_window_keeps_decoded_pictures_under_the_bound(window, qtbot, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    size = 90 * 120 * 3
    for i in range(60):
        cv2.imwrite(str(folder / f"p{i:02d}.png"), np.random.default_rng(i).integers(0, 256, (90, 120, 3),
                                                                                     dtype=np.uint8))
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        window.open_images([folder / "p00.png"])
    pictures = window.images()[0].pictures  # the worker's cache, which the window reads through
    pictures.max_bytes = 8 * size  # the bound under test, small
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        window.open_images([folder])
    images = window.images()
    assert len(images) == 61 and window.current_image().key == images[1].key
    assert pictures.nbytes <= 8 * size and len(pictures.decoded_keys()) <= 8
    # The window's list holds no pixels: a picture record's only array is its thumbnail.
    assert all([f.name for f in dataclasses.fields(image) if isinstance(getattr(image, f.name), np.ndarray)] == ["thumb"]
               for image in images)
    assert images[1].thumb.shape[:2] == (48, 64)
    decodes = pictures.decodes
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        window.show_image(5)  # long dropped: decoded again from its file, shown with its map
    assert pictures.decodes > decodes
    expected = cv2.cvtColor(cv2.imread(str(folder / "p04.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(window.current_image().rgb, expected)
    assert window.shown_result().display.shape == expected.shape[:2]
    assert pictures.nbytes <= 8 * size
