"""One cell of the compare grid: a composited map (or the dimmed picture while it is computed),
its caption, and a click that opens it in the main view.

The cell paints frames it is given (BGRX arrays from ``compositing.Compositor``, the same frames
the main view shows); it never blends anything itself. ``region`` is the part of the picture the
main view shows (its zoom and pan), in full-picture pixels; the cell fits it into its box.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (QColor, QFocusEvent, QImage, QKeyEvent, QMouseEvent, QPainter, QPaintEvent, QPalette, QPen)
from PySide6.QtWidgets import QSizePolicy, QWidget

from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui.compare.axes import CellKey

__all__ = ["CompareCell"]

PAD = 6  # card margin around the picture and the caption, px
_RADIUS = 6.0


def _qimage(frame: np.ndarray) -> QImage:
    """A QImage sharing ``frame``'s BGRX buffer (the cell keeps the array alive)."""
    h, w = frame.shape[:2]
    return QImage(frame.data, w, h, 4 * w, QImage.Format.Format_RGB32)


class CompareCell(QWidget):
    """A map of the grid (objectName "compareCell"); ``activated`` on a click, Return or Space.

    States: "pending" (dimmed picture and a spinner), "ready" (the map), "failed" (dimmed picture
    and the message). ``key`` is the map's (layer, class_index, method); ``result`` the MapResult
    once it has arrived.
    """

    activated = Signal()

    def __init__(self, key: CellKey, caption: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareCell")
        self.key = key
        self.result: MapResult | None = None
        self._caption = caption
        self._detail = ""
        self._warning = ""
        self._state = "pending"
        self._message = ""
        self._frame: np.ndarray | None = None  # the QImage below shares its buffer
        self._image: QImage | None = None
        self._level = 1
        self._picture = QSize(1, 1)  # full picture size, px
        self._region = QRectF()
        self._box = QSize(160, 120)
        self._width = 160  # inside the card's margins: at least the box, wider for the caption
        self._angle = 0
        self._pressed = False
        self._hover = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_Hover)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setToolTip(f"{caption}\nClick to open this map in the main view.")

    # -- content -------------------------------------------------------------------------------
    def state(self) -> str:
        """"pending", "ready" or "failed"."""
        return self._state

    def caption(self) -> str:
        """The caption line: method · class · layer."""
        return self._caption

    def detail(self) -> str:
        """The second line: the class's probability (and the map's time once it is computed)."""
        return self._detail

    def message(self) -> str:
        """The error shown by a failed cell ("" otherwise)."""
        return self._message

    def set_detail(self, detail: str, warning: str = "") -> None:
        self._detail, self._warning = detail, warning
        self.update()

    def set_pending(self) -> None:
        self._state, self._message, self.result = "pending", "", None
        self.update()

    def set_failed(self, message: str) -> None:
        self._state, self._message, self.result = "failed", message, None
        self.setToolTip(f"{self._caption}\n{message}")
        self.update()

    def set_result(self, result) -> None:
        """The map arrived: the cell shows the frame it is given next (``set_frame``)."""
        self._state, self._message, self.result = "ready", "", result
        self.update()

    def set_frame(self, frame: np.ndarray, level: int) -> None:
        """Show ``frame`` (BGRX at ``level``: 1 = full size, 2 = half, …): the map, or the picture while pending."""
        self._frame, self._image, self._level = frame, _qimage(frame), level
        self.update()

    def frame(self) -> np.ndarray | None:
        """The BGRX frame painted (the compositor's, not a copy: read only)."""
        return self._frame

    def set_geometry_of(self, picture: QSize, box: QSize, width: int = 0) -> None:
        """The full picture's size, the box the picture is fitted into, and the card's inner width
        (at least the box's; more leaves the caption room beside a small picture), px."""
        self._picture, self._box, self._width = QSize(picture), QSize(box), max(box.width(), width)
        self.setFixedSize(self.sizeHint())
        self.update()

    def set_region(self, region: QRectF) -> None:
        """The part of the picture to show (full-picture px)."""
        self._region = QRectF(region)
        self.update()

    def spin(self, angle: int) -> None:
        """Advance the spinner (pending cells only)."""
        self._angle = angle
        if self._state == "pending":
            self.update(self.box_rect())

    # -- geometry ------------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(self._width + 2 * PAD, self._box.height() + PAD + self._caption_height() + PAD)

    def chrome(self) -> QSize:
        """What the card adds around its picture box: margins and the caption lines, px."""
        return QSize(2 * PAD, 2 * PAD + self._caption_height())

    def _caption_height(self) -> int:
        return 2 * self.fontMetrics().height() + 6

    def box_rect(self) -> QRect:
        """Where the picture's box is, in the cell."""
        return QRect(PAD + (self._width - self._box.width()) // 2, PAD, self._box.width(), self._box.height())

    def caption_width(self) -> int:
        """The width the caption needs, px."""
        return self.fontMetrics().horizontalAdvance(self._caption) + 8  # the line is drawn 2 px in, 4 px short

    def image_rect(self) -> QRectF:
        """Where the region is painted: fitted into the box, centred, on whole pixels."""
        region = self._region if not self._region.isEmpty() else QRectF(0, 0, self._picture.width(),
                                                                           self._picture.height())
        box = self.box_rect()
        scale = min(box.width() / region.width(), box.height() / region.height())
        w, h = round(region.width() * scale), round(region.height() * scale)
        return QRectF(box.left() + (box.width() - w) // 2, box.top() + (box.height() - h) // 2, w, h)

    # -- painting ------------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        pal = self.palette()
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        dark = pal.color(QPalette.ColorRole.Window).lightness() < 128
        card = pal.color(QPalette.ColorRole.Base)
        if self._hover or self.hasFocus():
            edge = pal.color(QPalette.ColorRole.Highlight)
        else:
            edge = pal.color(QPalette.ColorRole.Mid) if not dark else pal.color(QPalette.ColorRole.Window).lighter(170)
        painter.setPen(QPen(edge, 2.0 if self.hasFocus() else 1.0))
        painter.setBrush(card)
        painter.drawRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), _RADIUS, _RADIUS)
        box = self.box_rect()
        painter.fillRect(box, pal.color(QPalette.ColorRole.Window).darker(108))  # as the main view's background
        self._paint_picture(painter)
        if self._state != "ready":
            veil = QColor(pal.color(QPalette.ColorRole.Window))
            veil.setAlpha(150)
            painter.fillRect(self.image_rect(), veil)
            if self._state == "pending":
                self._paint_spinner(painter, box)
            else:
                self._paint_message(painter, box, dark)
        self._paint_caption(painter, box, dark)
        painter.end()

    def _paint_picture(self, painter: QPainter) -> None:
        if self._image is None:
            return
        region = self._region if not self._region.isEmpty() else QRectF(0, 0, self._picture.width(),
                                                                           self._picture.height())
        target = self.image_rect()
        level = self._level
        source = QRectF(region.left() / level, region.top() / level, region.width() / level, region.height() / level)
        # As the main view: smooth when shrinking, crisp pixels when magnifying.
        smooth = target.width() < source.width()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        painter.drawImage(target, self._image, source)
        painter.restore()

    def _paint_spinner(self, painter: QPainter, box: QRect) -> None:
        radius = max(8, min(18, min(box.width(), box.height()) // 8))
        ring = QRectF(box.center().x() - radius, box.center().y() - radius, 2 * radius, 2 * radius)
        track = QColor(self.palette().color(QPalette.ColorRole.Text))
        track.setAlpha(40)
        painter.setPen(QPen(track, 3.0))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawEllipse(ring)
        painter.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), 3.0, Qt.PenStyle.SolidLine,
                            Qt.PenCapStyle.RoundCap))
        painter.drawArc(ring, -self._angle * 16, 100 * 16)
        text = QRect(box.left(), int(ring.bottom()) + 6, box.width(), painter.fontMetrics().height())
        painter.setPen(self.palette().color(QPalette.ColorRole.Text))
        painter.drawText(text, Qt.AlignmentFlag.AlignCenter, "Computing…")

    def _paint_message(self, painter: QPainter, box: QRect, dark: bool) -> None:
        painter.setPen(QColor("#ffb454") if dark else QColor("#a64b00"))  # the caption bar's caution colours
        painter.drawText(box.adjusted(10, 10, -10, -10), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                         self._message)

    def _paint_caption(self, painter: QPainter, box: QRect, dark: bool) -> None:
        fm = painter.fontMetrics()
        line = QRect(PAD + 2, box.bottom() + 5, self._width - 4, fm.height())
        painter.setPen(self.palette().color(QPalette.ColorRole.Text))
        painter.drawText(line, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         fm.elidedText(self._caption, Qt.TextElideMode.ElideRight, line.width()))
        line.translate(0, fm.height() + 1)
        warning_width = fm.horizontalAdvance(self._warning) + 8 if self._warning else 0
        painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(line.adjusted(0, 0, -warning_width, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                         fm.elidedText(self._detail, Qt.TextElideMode.ElideRight, line.width() - warning_width))
        if self._warning:
            painter.setPen(QColor("#ffb454") if dark else QColor("#a64b00"))
            painter.drawText(line, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, self._warning)

    # -- input ---------------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._pressed = True
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._pressed:
            self._pressed = False
            if self.rect().contains(event.position().toPoint()):
                self.activated.emit()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            self.activated.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def enterEvent(self, event) -> None:
        self._hover = True
        self.update()
        super().enterEvent(event)

    def leaveEvent(self, event) -> None:
        self._hover = False
        self.update()
        super().leaveEvent(event)

    def focusInEvent(self, event: QFocusEvent) -> None:
        self.update()
        super().focusInEvent(event)

    def focusOutEvent(self, event: QFocusEvent) -> None:
        self.update()
        super().focusOutEvent(event)
