"""A small legend for the heatmap colours: the colormap's gradient between "low" and "high"."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QImage, QPainter, QPaintEvent, QPalette, QTransform
from PySide6.QtWidgets import QSizePolicy, QWidget

from gradcam_desktop.core.overlay import COLORMAPS, colorize

__all__ = ["ColorBar"]

# Turns the left-to-right ramp so that "high" sits at the top, as on a thermometer.
_ROTATE_UP = QTransform().rotate(-90)


class ColorBar(QWidget):
    """Gradient of the current colormap with "low" and "high" labels (objectName "colorBar").

    ``ColorBar(parent=None, orientation=Qt.Orientation.Horizontal)``; ``set_colormap(name)``,
    ``colormap() -> str``.  Horizontal: "low" left, "high" right; vertical: "high" on top.
    """

    _THICKNESS = 12
    _LENGTH = 140

    def __init__(self, parent: QWidget | None = None,
                 orientation: Qt.Orientation = Qt.Orientation.Horizontal) -> None:
        super().__init__(parent)
        self.setObjectName("colorBar")
        self._orientation = orientation
        self._colormap = ""
        self._gradient = QImage()
        self.setToolTip("Map colours: low means the region barely moved the score, high means it mattered most")
        if orientation == Qt.Orientation.Horizontal:
            self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
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

    def sizeHint(self) -> QSize:  # noqa: N802
        fm = self.fontMetrics()
        labels = fm.horizontalAdvance("low") + fm.horizontalAdvance("high") + 16
        if self._orientation == Qt.Orientation.Horizontal:
            return QSize(self._LENGTH + labels, max(fm.height(), self._THICKNESS) + 4)
        return QSize(max(fm.horizontalAdvance("high"), self._THICKNESS) + 4, self._LENGTH + 2 * fm.height() + 8)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        hint = self.sizeHint()
        return QSize(hint.width() // 2, hint.height()) if self._orientation == Qt.Orientation.Horizontal \
            else QSize(hint.width(), hint.height() // 2)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        fm = self.fontMetrics()
        text = self.palette().color(QPalette.ColorRole.WindowText)
        r = self.rect()
        if self._orientation == Qt.Orientation.Horizontal:
            low_w, high_w = fm.horizontalAdvance("low"), fm.horizontalAdvance("high")
            bar = QRect(low_w + 8, (r.height() - self._THICKNESS) // 2,
                        max(1, r.width() - low_w - high_w - 16), self._THICKNESS)
            painter.drawImage(bar, self._gradient)
            painter.setPen(text)
            painter.drawText(QRect(0, 0, low_w + 4, r.height()), Qt.AlignmentFlag.AlignVCenter, "low")
            painter.drawText(QRect(bar.right() + 8, 0, high_w + 4, r.height()), Qt.AlignmentFlag.AlignVCenter, "high")
        else:
            h = fm.height()
            bar = QRect((r.width() - self._THICKNESS) // 2, h + 4, self._THICKNESS, max(1, r.height() - 2 * h - 8))
            painter.drawImage(bar, self._gradient.transformed(_ROTATE_UP))
            painter.setPen(text)
            painter.drawText(QRect(0, 0, r.width(), h), Qt.AlignmentFlag.AlignHCenter, "high")
            painter.drawText(QRect(0, r.height() - h, r.width(), h), Qt.AlignmentFlag.AlignHCenter, "low")
        painter.setPen(self.palette().color(QPalette.ColorRole.Mid))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(bar.adjusted(0, 0, -1, -1))
        painter.end()

