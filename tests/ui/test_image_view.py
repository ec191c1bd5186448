"""Widget tests of the image view, colour bar, caption and icons, driven like a user would."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QGraphicsPixmapItem

from gradcam_desktop.core.overlay import COLORMAPS, blend, colorize
from gradcam_desktop.ui.icons import ICON_NAMES, icon
from gradcam_desktop.ui.explore.image_view import MODES, ColorBar, ImageView

USER = Qt.ItemDataRole.UserRole

# -- image view ------------------------------------------------------------------------------------
JET_LOW, JET_HIGH = (0, 0, 128), (128, 0, 0)  # OpenCV's jet at 0 and at 1, in RGB


def gradient_image(h: int = 30, w: int = 80) -> np.ndarray:
    """Non-square and asymmetric, so a transpose or flip cannot go unnoticed."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.dstack([xx * 3 % 256, yy * 8 % 256, (xx + 2 * yy) % 256]).astype(np.uint8)


def ramp_map(h: int = 30, w: int = 80) -> np.ndarray:
    return np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))


@pytest.fixture
def view(qtbot):
    v = ImageView()
    qtbot.addWidget(v)
    v.resize(400, 300)
    return v


def test_modes_composite_the_right_pixels(view):
    rgb, display = gradient_image(), ramp_map()
    view.set_image(rgb)
    assert view.objectName() == "imageView"
    np.testing.assert_array_equal(view.composited(), rgb)  # no map yet: the image itself
    view.set_map(display)
    view.set_alpha(0.0)
    np.testing.assert_array_equal(view.composited(), rgb)
    view.set_alpha(1.0)
    np.testing.assert_array_equal(view.composited(), colorize(display, "jet"))
    assert tuple(view.composited()[0, 0]) == JET_LOW and tuple(view.composited()[0, -1]) == JET_HIGH
    for alpha in (0.25, 0.5, 0.8):
        for cmap in ("jet", "viridis"):
            view.set_colormap(cmap)
            view.set_alpha(alpha)
            np.testing.assert_array_equal(view.composited(), blend(rgb, display, alpha, cmap))
    view.set_mode("heatmap")
    np.testing.assert_array_equal(view.composited(), colorize(display, "viridis"))
    view.set_mode("original")
    np.testing.assert_array_equal(view.composited(), rgb)
    with pytest.raises(ValueError):
        view.set_mode("sepia")
    with pytest.raises(ValueError):
        view.set_colormap("rainbow-unicorn")
    assert set(MODES) == {"overlay", "heatmap", "original", "side"}


def test_overlay_middle_value_by_hand(view):
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[...] = (100, 60, 200)
    display = np.zeros((4, 6), np.float32)
    display[:, 3:] = 1.0
    view.set_image(rgb)
    view.set_map(display)
    view.set_colormap("jet")
    view.set_alpha(0.25)
    out = view.composited()
    # 0.75 * image + 0.25 * jet: (75, 45, 0.75*200 + 0.25*128 = 182) and (75 + 32, 45, 150).
    assert tuple(out[0, 0]) == (75, 45, 182)
    assert tuple(out[3, 5]) == (107, 45, 150)


def test_side_by_side_and_qimage_keep_orientation(view):
    rgb, display = gradient_image(30, 80), ramp_map(30, 80)
    view.set_image(rgb)
    view.set_map(display)
    view.set_alpha(0.5)
    view.set_mode("side")
    out = view.composited()
    gap = out.shape[1] - 160
    assert out.shape[0] == 30 and gap > 0
    np.testing.assert_array_equal(out[:, :80], rgb)
    assert (out[:, 80:80 + gap] == 255).all()
    np.testing.assert_array_equal(out[:, 80 + gap:], blend(rgb, display, 0.5, "jet"))
    assert view.sceneRect().width() == out.shape[1] and view.sceneRect().height() == 30
    view.set_mode("original")
    qimage = view.displayed_qimage()
    assert (qimage.width(), qimage.height()) == (80, 30)
    for x, y in ((0, 0), (79, 0), (5, 29), (63, 17)):
        assert QColor(qimage.pixel(x, y)).getRgb()[:3] == tuple(int(c) for c in rgb[y, x])


def test_screen_shows_what_composited_returns(view, qtbot):
    """The pixmap shares the blended buffer with no copy: check the pixels on screen, after GC."""
    import gc

    rgb, display = gradient_image(30, 80), ramp_map(30, 80)
    view.set_image(rgb)
    view.set_map(display)
    view.show()
    qtbot.waitExposed(view)
    view.actual_size()
    for alpha in (0.2, 0.7, 0.2):
        view.set_alpha(alpha)
        gc.collect()
        shown = view.viewport().grab().toImage()
        want = view.composited()
        for x, y in ((3, 4), (40, 15), (77, 28)):
            pos = view.mapFromScene(QPointF(x + 0.25, y + 0.25))  # mapFromScene rounds to a QPoint
            assert QColor(shown.pixel(pos)).getRgb()[:3] == tuple(int(c) for c in want[y, x])


def test_new_image_drops_the_old_map(view):
    view.set_image(gradient_image())
    view.set_map(ramp_map())
    view.set_image(gradient_image())
    np.testing.assert_array_equal(view.composited(), gradient_image())
    with pytest.raises(ValueError):
        view.set_map(np.zeros((80, 30), np.float32))  # transposed: wrong shape
    view.set_map(ramp_map())
    view.set_map(None)
    np.testing.assert_array_equal(view.composited(), gradient_image())


def test_uint8_map_is_the_same_overlay_as_its_float(view):
    """The worker sends round(display * 255) as uint8: same pixels as the float map, value /255."""
    rgb, display = gradient_image(), ramp_map()
    quantized = np.round(display * 255.0).astype(np.uint8)
    view.set_image(rgb)
    view.set_map(quantized)
    for alpha in (0.3, 1.0):
        view.set_alpha(alpha)
        np.testing.assert_array_equal(view.composited(), blend(rgb, display, alpha, "jet"))
    quantized[:] = 0  # a writable array may be reused by its owner: the view kept a copy
    np.testing.assert_array_equal(view.composited(), blend(rgb, display, 1.0, "jet"))


def smooth_image(h: int, w: int) -> np.ndarray:
    """Large, smooth and asymmetric: a reduced level must look like the full image, shrunk."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.dstack([255 * xx / w, 255 * yy / h, 128 + 100 * np.sin(xx / 97.0 + yy / 61.0)]).astype(np.uint8)


def pixmap_item(view: ImageView):
    return next(i for i in view.scene().items() if isinstance(i, QGraphicsPixmapItem) and i.isVisible())


def test_large_image_is_composited_at_screen_size_and_in_full_on_demand(view, qtbot):
    h, w = 1200, 1600
    rgb = smooth_image(h, w)
    display = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
    view.set_image(rgb)
    view.set_map(np.round(display * 255.0).astype(np.uint8))
    view.set_alpha(0.6)
    view.show()
    qtbot.waitExposed(view)
    view.fit_to_window()
    item = pixmap_item(view)
    # Fitted in 400×300: a quarter-size level is on screen, covering the image's whole scene rect.
    assert item.pixmap().width() <= w // 2 and item.pixmap().width() >= w * view.zoom() * 0.99
    assert item.sceneBoundingRect() == QRectF(0, 0, w, h)
    full = view.composited()  # export and clipboard: always the full-size overlay
    assert full.shape == (h, w, 3)
    np.testing.assert_array_equal(full, blend(rgb, display, 0.6, "jet"))
    shown = view.viewport().grab().toImage()
    for x, y in ((200, 150), (800, 600), (1400, 1000)):
        pos = view.mapFromScene(QPointF(x, y))
        want = full[y - 8:y + 8, x - 8:x + 8].reshape(-1, 3).mean(axis=0)
        assert np.abs(np.asarray(QColor(shown.pixel(pos)).getRgb()[:3]) - want).max() <= 6
    quantized = np.round(display * 255.0) / 255.0
    with qtbot.waitSignal(view.valueHovered) as blocker:  # full-image coordinates, full-size map
        move(view, QPointF(1234.5, 1100.5))
    x, y, value = blocker.args
    assert abs(x - 1234) <= 1 / view.zoom() and abs(y - 1100) <= 1 / view.zoom()
    assert value == pytest.approx(quantized[y, x])
    view.actual_size()  # 1:1 shows the true pixels
    assert pixmap_item(view).pixmap().width() == w
    view.centerOn(QPointF(1000, 700))
    shown = view.viewport().grab().toImage()
    for x, y in ((990, 690), (1003, 707), (1011, 699)):
        pos = view.mapFromScene(QPointF(x + 0.25, y + 0.25))
        assert QColor(shown.pixel(pos)).getRgb()[:3] == tuple(int(c) for c in full[y, x])
    with qtbot.waitSignal(view.valueHovered) as blocker:
        move(view, QPointF(1003.25, 707.25))
    assert blocker.args[:2] == [1003, 707] and blocker.args[2] == pytest.approx(quantized[707, 1003])
    view.zoom_by(0.5)  # back out: a reduced level again
    assert pixmap_item(view).pixmap().width() == w // 2
    view.set_colormap("viridis")
    view.set_mode("heatmap")
    np.testing.assert_array_equal(view.composited(), colorize(display, "viridis"))


def wheel(view: ImageView, pos: QPointF, modifiers: Qt.KeyboardModifier, steps: int = 1) -> None:
    event = QWheelEvent(pos, view.viewport().mapToGlobal(pos), QPoint(0, 0), QPoint(0, 120 * steps),
                        Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(view.viewport(), event)


def test_ctrl_wheel_zooms_about_the_pointer(view, qtbot):
    view.set_image(np.zeros((600, 800, 3), np.uint8))
    view.show()
    qtbot.waitExposed(view)
    view.actual_size()
    pos = QPointF(100, 80)
    before = view.mapToScene(pos.toPoint())
    wheel(view, pos, Qt.KeyboardModifier.ControlModifier)
    assert view.zoom() == pytest.approx(1.25)
    after = view.mapToScene(pos.toPoint())
    assert abs(after.x() - before.x()) <= 1.5 and abs(after.y() - before.y()) <= 1.5
    wheel(view, pos, Qt.KeyboardModifier.NoModifier)  # plain wheel scrolls, never zooms
    assert view.zoom() == pytest.approx(1.25)
    wheel(view, pos, Qt.KeyboardModifier.ControlModifier, steps=-2)
    assert view.zoom() == pytest.approx(1.25 / 1.25 ** 2)


def test_fit_and_actual_size(view, qtbot):
    view.set_image(np.zeros((600, 800, 3), np.uint8))
    view.show()
    qtbot.waitExposed(view)
    # Scroll bars come and go while the first layout settles; the fit must win in the end.
    qtbot.waitUntil(lambda: view.mapToScene(view.viewport().rect()).boundingRect().contains(view.sceneRect()))
    viewport = view.viewport().rect()
    assert view.zoom() == pytest.approx(min(viewport.width() / 800, viewport.height() / 600), rel=0.03)
    view.actual_size()
    assert view.zoom() == 1.0
    view.zoom_by(2.0)
    assert view.zoom() == 2.0
    view.resize(300, 200)  # the user zoomed: resizing keeps the zoom
    qtbot.wait(10)
    assert view.zoom() == 2.0
    view.fit_to_window()
    assert view.zoom() < 0.5
    view.resize(600, 500)  # fitting again: resizing refits
    qtbot.waitUntil(lambda: view.zoom() > 0.6)


def move(view: ImageView, scene_point: QPointF) -> None:
    pos = QPointF(view.mapFromScene(scene_point))
    event = QMouseEvent(QEvent.Type.MouseMove, pos, view.viewport().mapToGlobal(pos),
                        Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(view.viewport(), event)


def test_value_hovered_reports_the_map_value(view, qtbot):
    rgb, display = gradient_image(30, 80), ramp_map(30, 80)
    view.set_image(rgb)
    view.show()
    qtbot.waitExposed(view)
    view.zoom_by(3.0)
    with qtbot.waitSignal(view.valueHovered) as blocker:
        move(view, QPointF(10.5, 20.5))
    assert blocker.args == [10, 20, -1.0]  # no map yet
    view.set_map(display)
    with qtbot.waitSignal(view.valueHovered) as blocker:
        move(view, QPointF(61.5, 3.5))
    assert blocker.args[:2] == [61, 3] and blocker.args[2] == pytest.approx(float(display[3, 61]))
    view.set_mode("side")  # the right half maps to the same image pixels
    with qtbot.waitSignal(view.valueHovered) as blocker:
        move(view, QPointF(view.sceneRect().width() - 80 + 61.5, 3.5))
    assert blocker.args[:2] == [61, 3]
    with qtbot.waitSignal(view.valueHovered) as blocker:
        move(view, QPointF(80.5 + 1, 3.5))  # in the gap: off the image
    assert blocker.args == [-1, -1, -1.0]


def test_placeholder_only_without_image(view, qtbot):
    view.show()
    qtbot.waitExposed(view)

    def colours() -> int:
        image = view.viewport().grab().toImage()
        return len({image.pixel(x, y) for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)})

    assert colours() > 20  # anti-aliased text on the background
    view.set_image(np.zeros((300, 400, 3), np.uint8))
    assert colours() <= 4  # black image on the background (and its smoothed edge)


def test_colorbar_follows_colormap(qtbot):
    bar = ColorBar()
    qtbot.addWidget(bar)
    bar.resize(300, 24)
    for name in ("jet", "viridis"):
        bar.set_colormap(name)
        image = bar.grab().toImage()
        row = [QColor(image.pixel(x, image.height() // 2)).getRgb()[:3] for x in range(image.width())]
        for value in (0.1, 0.9):
            want = np.asarray(colorize(np.array([[value]], np.float32), name)[0, 0], int)
            assert min(np.abs(np.asarray(c) - want).sum() for c in row) < 12
    with pytest.raises(ValueError):
        bar.set_colormap("nope")
    assert "jet" in COLORMAPS


# -- icons and imports -----------------------------------------------------------------------------
def test_every_icon_renders(qapp):
    for name in ICON_NAMES:
        pixmap = icon(name).pixmap(16, 16)
        assert not pixmap.isNull(), name
        image = pixmap.toImage()
        assert any(QColor(image.pixel(x, y)).alpha() > 0 for x in range(16) for y in range(16)), name
    with pytest.raises(FileNotFoundError):
        icon("no-such-icon")


def test_widgets_do_not_import_tensorflow():
    code = ("import sys; import gradcam_desktop.ui.explore.layer_tree, gradcam_desktop.ui.explore.class_list, "
            "gradcam_desktop.ui.explore.image_view, gradcam_desktop.ui.explore.colorbar, gradcam_desktop.ui.icons; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_colorbar_says_each_map_is_scaled_to_its_own_maximum(qtbot):
    bar = ColorBar()
    qtbot.addWidget(bar)
    assert bar.labels() == ("0", "this map's maximum")
    assert "own maximum" in bar.toolTip()
    assert bar.minimumSizeHint().width() > bar.fontMetrics().horizontalAdvance("0this map's maximum")


def test_side_by_side_panes_carry_their_titles(view, qtbot):
    rgb = np.full((60, 80, 3), 255, np.uint8)
    view.set_image(rgb)
    view.set_map(ramp_map(60, 80))
    view.set_mode("side")
    view.set_pane_titles(("Picture", "Evidence for 'dog'"))
    view.show()
    qtbot.waitExposed(view)
    view.actual_size()
    assert view.pane_titles() == ("Picture", "Evidence for 'dog'")

    def corner() -> QColor:
        image = view.viewport().grab().toImage()
        return QColor(image.pixel(view.mapFromScene(QPointF(10.5, 10.5))))

    assert corner().lightness() < 128  # the title's dark box over a white picture
    view.set_pane_titles(None)
    assert corner().lightness() > 200
    view.set_pane_titles(("Picture", "Evidence for 'dog'"))
    view.set_mode("overlay")
    assert view.pane_titles() is None


def test_caption_bar_says_what_the_map_shows(qtbot):
    from gradcam_desktop.core.types import MapResult, Prediction
    from gradcam_desktop.ui.explore.caption import CaptionBar

    bar = CaptionBar()
    qtbot.addWidget(bar)
    result = MapResult(raw=np.ones((2, 2), np.float32), layer="last_conv", class_index=3, class_name="star",
                       score=0.004, prediction=Prediction(np.array([0.996, 0.004]), [(0, "circle", 0.996)], "softmax"))
    bar.set_result(result)
    assert bar.caption() == "Evidence for 'star' (0.4 %) · layer last_conv"
    assert bar.warning().startswith("unlikely class") and "Unlikely class" in bar.text()
    bar.set_result(result.with_(score=0.5))
    assert bar.warning() == "" and "Unlikely" not in bar.text()
    bar.set_result(None)
    assert bar.caption() == "" and bar.warning() == ""
