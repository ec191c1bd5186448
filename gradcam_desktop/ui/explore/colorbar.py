"""The map's colour legend: the colormap's gradient from "0" to "this map's maximum".

Every map is scaled to its own maximum, so the legend says so in words rather than "high":
the same red means "the most of this map", not the same amount in two maps.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPaintEvent, QPalette, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from gradcam_desktop.core.annotate import LEGEND_HIGH, LEGEND_LOW, SCALE_NOTE
from gradcam_desktop.core.overlay import COLORMAPS, colorize

__all__ = ["ColorBar"]

# Turns the left-to-right ramp so that the maximum sits at the top, as on a thermometer.
_ROTATE_UP = QTransform().rotate(-90)


class ColorBar(QWidget):
    """Gradient of the current colormap between its labels (objectName "colorBar").

    ``ColorBar(parent=None, orientation=Qt.Orientation.Horizontal)``; ``set_colormap(name)``,
    ``colormap() -> str``, ``labels() -> (low, high)``.  Horizontal: "0" left, "this map's
    maximum" right; vertical (narrow): "max" on top, "0" below.
    """

    _THICKNESS = 12
    _LENGTH = 280

    def __init__(self, parent: QWidget | None = None,
                 orientation: Qt.Orientation = Qt.Orientation.Horizontal) -> None:
        super().__init__(parent)
        self.setObjectName("colorBar")
        self._orientation = orientation
        self._colormap = ""
        self._gradient = QImage()
        self._low, self._high = (LEGEND_LOW, LEGEND_HIGH) if orientation == Qt.Orientation.Horizontal else (LEGEND_LOW, "max")
        self.setToolTip(f"Map colours, from 0 (this place did not raise the class's score) to this map's maximum "
                        f"(where it was raised most). {SCALE_NOTE}")
        if orientation == Qt.Orientation.Horizontal:
            self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
            self.setMaximumWidth(2 * self._LENGTH)
        else:
            self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        self.set_colormap("jet")

    def set_colormap(self, name: str) -> None:
        """Show the gradient of ``name`` (a key of core.overlay.COLORMAPS)."""
        if name not in COLORMAPS:
            raise ValueError(f"Unknown colormap {name!r}; choose one of: {', '.join(COLORMAPS)}.")
        self._colormap = name
        # The same colorize as the overlay, so the legend can never disagree with the image.
        ramp = colorize(np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :], name)
        ramp = np.ascontiguousarray(ramp)
        self._gradient = QImage(ramp.data, 256, 1, 3 * 256, QImage.Format.Format_RGB888).copy()
        self.update()

    def colormap(self) -> str:
        """The colormap shown."""
        return self._colormap

    def labels(self) -> tuple[str, str]:
        """The words at the gradient's low and high ends."""
        return self._low, self._high

    def sizeHint(self) -> QSize:
        fm = self.fontMetrics()
        labels = fm.horizontalAdvance(self._low) + fm.horizontalAdvance(self._high) + 16
        if self._orientation == Qt.Orientation.Horizontal:
            return QSize(self._LENGTH + labels, max(fm.height(), self._THICKNESS) + 4)
        return QSize(max(fm.horizontalAdvance(self._high), self._THICKNESS) + 4, self._LENGTH + 2 * fm.height() + 8)

    def minimumSizeHint(self) -> QSize:
        # The words never shrink (a cut "this map's maxi" says nothing); the gradient may.
        hint = self.sizeHint()
        return QSize(hint.width() - self._LENGTH + 40, hint.height()) if self._orientation == Qt.Orientation.Horizontal \
            else QSize(hint.width(), hint.height() - self._LENGTH + 40)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        fm = self.fontMetrics()
        text = self.palette().color(QPalette.ColorRole.WindowText)
        r = self.rect()
        if self._orientation == Qt.Orientation.Horizontal:
            low_w, high_w = fm.horizontalAdvance(self._low), fm.horizontalAdvance(self._high)
            bar = QRect(low_w + 8, (r.height() - self._THICKNESS) // 2,
                        max(1, r.width() - low_w - high_w - 16), self._THICKNESS)
            painter.drawImage(bar, self._gradient)
            painter.setPen(text)
            painter.drawText(QRect(0, 0, low_w + 4, r.height()), Qt.AlignmentFlag.AlignVCenter, self._low)
            painter.drawText(QRect(bar.right() + 8, 0, high_w + 4, r.height()), Qt.AlignmentFlag.AlignVCenter, self._high)
        else:
            h = fm.height()
            bar = QRect((r.width() - self._THICKNESS) // 2, h + 4, self._THICKNESS, max(1, r.height() - 2 * h - 8))
            painter.drawImage(bar, self._gradient.transformed(_ROTATE_UP))
            painter.setPen(text)
            painter.drawText(QRect(0, 0, r.width(), h), Qt.AlignmentFlag.AlignHCenter, self._high)
            painter.drawText(QRect(0, r.height() - h, r.width(), h), Qt.AlignmentFlag.AlignHCenter, self._low)
        painter.setPen(self.palette().color(QPalette.ColorRole.Mid))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(bar.adjusted(0, 0, -1, -1))
        painter.end()

