"""The Patterns view and Mark Object in the real window (issue 19), driven by real input events.

The planted Clever Hans folder (tests/patterns_factory.py): 20 "bright" pictures with a centred
blob and 4 whose only bright thing is a corner patch. In the window, Find Patterns must show the
corner pictures as one flagged cluster; a click on its card lists exactly them, and a click on a
listed picture shows it with the map of its class. The report written from the clusters shown
embeds every picture. A box dragged on a picture is saved beside it in picture pixels, and the
caption's inside share is the core's on the map shown.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import patterns_factory
import pytest
from patterns_factory import CENTRED, SIDE, WATERMARKED
from PySide6.QtCore import QPointF, Qt
from PySide6.QtTest import QTest
from ui_window import WINDOW_TIMEOUT, shown_window

from gradcam_desktop.core.inside_share import inside_share, mask_from_boxes

@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """(the brightness model, the labelled folder)."""
    model = patterns_factory.brightness_model(tmp_path_factory.mktemp("patterns_window_model"))
    labelled, _masks = patterns_factory.watermark_folder(tmp_path_factory.mktemp("patterns_window_data"))
    return model, labelled


@pytest.fixture
def window(qtbot, planted):
    window = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WINDOW_TIMEOUT):
        window.open_model(str(planted[0]))
    qtbot.waitUntil(lambda: window.model_info() is not None, timeout=WINDOW_TIMEOUT)
    return window


def _click_item(widget, item) -> None:
    widget.scrollToItem(item)
    QTest.mouseClick(widget.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     widget.visualItemRect(item).center())


def _number(path: str) -> int:
    return int(Path(path).stem[3:])


def test_find_patterns_click_the_flagged_cluster_and_open_a_picture(window, qtbot, planted, tmp_path):
    _model, labelled = planted
    controller, view = window.patterns, window.patterns.view
    with qtbot.waitSignal(controller.feed.clusters, timeout=WINDOW_TIMEOUT):
        assert controller.open(labelled) is not None
    qtbot.waitUntil(lambda: controller.job() is None, timeout=WINDOW_TIMEOUT)
    assert window.findChild(type(controller.dock), "patternsDock").isVisible()
    found = view.found().analysis
    assert len(found.done) == CENTRED + WATERMARKED and found.method.name == "gradcam"
    flagged = [view.strip.item(i) for i in range(view.strip.count()) if "small and far" in view.strip.item(i).text()]
    assert len(flagged) == 1 and view.strip.count() >= 2

    _click_item(view.strip, flagged[0])  # a real click on the card
    assert view.chosen_cluster() == flagged[0].data(Qt.ItemDataRole.UserRole)
    listed = [view.members.item(i).toolTip() for i in range(view.members.count())]
    assert sorted(_number(p) for p in listed) == list(range(CENTRED, CENTRED + WATERMARKED))

    _click_item(view.members, view.members.item(0))  # a real click on a listed picture
    qtbot.waitUntil(lambda: window.current_image() is not None and window.current_image().path is not None
                    and Path(window.current_image().path).samefile(listed[0]) and window.shown_result() is not None
                    and window.shown_result().image_key == window.current_image().key, timeout=WINDOW_TIMEOUT)
    assert window.shown_result().class_index == 0 and window.kept_class() == 0  # 'bright', the class clustered

    # The report, from the clusters shown: only the mistakes' maps are made; every picture is embedded.
    out = tmp_path / "report.html"
    with qtbot.waitSignal(controller.feed.written, timeout=WINDOW_TIMEOUT):
        assert controller.export_report(out) is not None
    page = out.read_text(encoding="utf-8")
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) >= view.strip.count() and all(src.startswith("data:image/png;base64,") for src in images)


def test_another_model_clears_the_clusters(window, qtbot, planted):
    controller, view = window.patterns, window.patterns.view
    with qtbot.waitSignal(controller.feed.clusters, timeout=WINDOW_TIMEOUT):
        controller.open(planted[1])
    qtbot.waitUntil(lambda: controller.job() is None, timeout=WINDOW_TIMEOUT)
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WINDOW_TIMEOUT):
        window.open_model("demo")
    assert view.found() is None and view.strip.count() == 0 and "Cleared" in view.status.text()


def test_a_box_dragged_on_the_picture_gives_the_inside_share(window, qtbot, planted):
    picture = planted[1] / "bright" / "pic03.png"
    sidecar = Path(str(picture) + ".object.json")
    sidecar.unlink(missing_ok=True)
    window.open_images([str(picture)])
    qtbot.waitUntil(lambda: window.shown_result() is not None, timeout=WINDOW_TIMEOUT)
    QTest.keyClick(window, Qt.Key.Key_M)
    assert window.marks.mark_action.isChecked()
    view = window.ui.view
    start, end = view.mapFromScene(QPointF(2.0, 3.0)), view.mapFromScene(QPointF(18.0, 29.0))
    viewport = view.viewport()
    QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for step in range(1, 5):
        QTest.mouseMove(viewport, start + (end - start) * (step / 4))
    QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, end)
    qtbot.waitUntil(lambda: sidecar.is_file(), timeout=5_000)

    # Saved in picture pixels: where the two view points fall in the picture (one screen pixel = 1/zoom).
    (box,) = json.loads(sidecar.read_text(encoding="utf-8"))["boxes"]
    expected = [*_scene(view, start), *_scene(view, end)]
    assert np.allclose(box, expected, atol=0.1 + 1.0 / view.zoom())
    assert window.marks.boxes() == [tuple(box)]

    # The caption's share is the core's on the map shown, with the box as saved.
    result = window.shown_result()
    share = inside_share(result.raw, mask_from_boxes([tuple(box)], (SIDE, SIDE)), (SIDE, SIDE))
    assert 0.0 < share < 1.0
    assert f"Inside share: {share:.0%}" in window.ui.caption.note_line()

    # The next picture has no box: no share; back on this one, the box and its share return.
    window.open_images([str(planted[1] / "bright" / "pic04.png")])
    qtbot.waitUntil(lambda: window.shown_result() is not None and window.current_image().name == "pic04.png",
                    timeout=WINDOW_TIMEOUT)
    assert window.marks.boxes() == [] and window.ui.caption.note_line() == ""
    window.show_image(0)
    qtbot.waitUntil(lambda: window.shown_result() is not None and window.current_image().name == "pic03.png",
                    timeout=WINDOW_TIMEOUT)
    assert window.marks.boxes() == [tuple(box)] and f"{share:.0%}" in window.ui.caption.note_line()

    window.marks.clear_action.trigger()
    assert not sidecar.exists() and window.ui.caption.note_line() == ""


def _scene(view, point) -> tuple[float, float]:
    scene = view.mapToScene(point)
    return float(np.clip(scene.x(), 0, SIDE)), float(np.clip(scene.y(), 0, SIDE))


def test_a_cards_picture_is_read_back_whole(qtbot):
    """The card's picture comes from a thumbnail pixmap: its pixels must be copied out of the QImage
    (a view of a freed buffer once showed noise on the cards' upper rows)."""
    from PySide6.QtGui import QImage, QPixmap

    from gradcam_desktop.ui.patterns.view import _pixmap_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (88, 88, 3), dtype=np.uint8)  # 264-byte lines: no padding
    pixmap = QPixmap.fromImage(QImage(rgb.data, 88, 88, 3 * 88, QImage.Format.Format_RGB888).copy())
    read = _pixmap_rgb(pixmap)
    churn = [np.full((88, 88, 4), 255, np.uint8) for _ in range(200)]  # reuse freed memory, if any was freed
    assert read.flags.owndata and np.array_equal(read, rgb) and len(churn) == 200
