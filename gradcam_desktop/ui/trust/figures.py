"""The Trust panel's figures: a traffic light, a curve plot (pyqtgraph) and the sanity check's small maps.

Each follows the application palette (a dark desktop gets dark plots) and is told what to show;
none computes anything: the numbers come from ``core.trust``'s report, the colours of the small
maps from the window's own compositing (``compositing.Compositor`` over ``core.overlay``), so
they look exactly like the main view at the same opacity and colours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette, QPixmap
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from gradcam_desktop.core.overlay import display_map
from gradcam_desktop.ui.explore.compositing import Compositor
from gradcam_desktop.ui.export import rgb_to_qimage

__all__ = ["LIGHTS", "CurvePlot", "Light", "SanityMap", "SanityRow", "small_map"]

#: A verdict's light: its colour and the word that says the same without colour.
LIGHTS = {"green": ("good", "#2e9d4f"), "yellow": ("weak", "#d9a400"), "red": ("poor", "#d64541")}
#: Longest side of a sanity-check map, in pixels.
SMALL_MAP = 48


class Light(QWidget):
    """A coloured dot and its word ("good", "weak", "poor"); ``set_light(None)`` while unknown."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colour: QColor | None = None
        self._word = QLabel("…")
        font = self._word.font()
        font.setBold(True)
        self._word.setFont(font)
        self._side = self._word.fontMetrics().height()
        row = QHBoxLayout(self)
        row.setContentsMargins(self._side + 4, 0, 0, 0)  # the dot is painted in the left margin
        row.addWidget(self._word)

    def set_light(self, light: str | None) -> None:
        """Show verdict light ``light`` ("green", "yellow", "red"), or None: not known yet."""
        word, colour = LIGHTS.get(light or "", ("…", None))
        self._colour = QColor(colour) if colour else None
        self._word.setText(word)
        self.update()

    def word(self) -> str:
        """The word shown ("good", "weak", "poor"; "…" while unknown)."""
        return self._word.text()

    def colour(self) -> str | None:
        """The dot's colour (#rrggbb), None while unknown."""
        return self._colour.name() if self._colour is not None else None

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        top = (self.height() - self._side) // 2
        rect = self.rect().adjusted(1, top + 1, 0, 0)
        rect.setSize(QSize(self._side - 2, self._side - 2))
        if self._colour is None:
            painter.setPen(self.palette().color(QPalette.ColorRole.Mid))
        else:
            painter.setPen(self._colour.darker(140))
            painter.setBrush(self._colour)
        painter.drawEllipse(rect)
        painter.end()


class CurvePlot(pg.PlotWidget):
    """One curve (the map's pixel order, solid, area filled) and its random-order baseline (dashed).

    x: the share of pixels removed (deletion) or shown (insertion), 0 … 1; y: the probability of
    the explained class (of a "rather than" map: its share of the two classes). The legend names
    each line with the area under it. Not zoomable: a figure to read, not to explore. ``corner`` is
    where the legend sits ("top" or "bottom" right: where the curves seldom are).
    """

    def __init__(self, x_label: str, corner: str = "top", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setXRange(0.0, 1.0, padding=0.02)
        self.setYRange(0.0, 1.0, padding=0.04)
        self.setLabel("bottom", x_label)
        self.setLabel("left", "probability")
        minor = [(0.25, ""), (0.75, "")]
        self.getAxis("bottom").setTicks([[(0.0, "0 %"), (0.5, "50 %"), (1.0, "100 %")], minor])
        self.getAxis("left").setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")], minor])
        for name in ("left", "bottom"):
            # "0 %" and "100 %" overhang the plot's ends; pyqtgraph's own grid would drop them.
            self.getAxis(name).setStyle(hideOverlappingLabels=24)
        self._grid = [pg.InfiniteLine(v, angle) for v in (0.25, 0.5, 0.75) for angle in (0, 90)]
        for line in self._grid:
            self.addItem(line)
        self.plotItem.setContentsMargins(0, 2, 14, 0)  # room for "100 %" beyond the plot's right end
        self.setMinimumSize(180, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.random_curve = self.plot([], [])
        self.map_curve = self.plot([], [], fillLevel=0.0)
        self.legend = self.addLegend(offset=(-4, 4) if corner == "top" else (-4, -4), verSpacing=-6)
        self.legend.setLabelTextSize("8pt")
        # The legend's samples: lines only (a filled curve's own sample is its fill's outline).
        self._samples = (pg.PlotDataItem(), pg.PlotDataItem())
        self._legend_texts: list[str] = []
        self._follow_palette()

    def set_curves(self, curve: Sequence[float] | np.ndarray | None, random: Sequence[float] | np.ndarray | None, *,
                   class_name: str = "", area: float | None = None, random_area: float | None = None,
                   label: str = "") -> None:
        """Draw p_0 … p_n at x = i / n (None: no curve); the legend gives each line's area.

        ``label`` names p on the left axis (``core.verdicts.quantity``); else p('class_name').
        """
        for item, values in ((self.map_curve, curve), (self.random_curve, random)):
            if values is None or len(values) < 2:
                item.setData([], [])
            else:
                ys = np.asarray(values, np.float64)
                item.setData(np.arange(len(ys)) / (len(ys) - 1), ys)  # x_i = i / n
        self._fit_y(curve, random)
        self.setLabel("left", label or (f"p('{class_name}')" if class_name else "probability"))
        self.legend.clear()
        self._legend_texts = []
        for sample, text, value in zip(self._samples, ("map's order", "random order"), (area, random_area), strict=True):
            if value is not None:
                self._legend_texts.append(f"area {value:.3f}: {text}")
                self.legend.addItem(sample, self._legend_texts[-1])

    def _fit_y(self, *curves: Sequence[float] | np.ndarray | None) -> None:
        """0 … 1 for probabilities; a value or region score relative to the blurred picture's
        (core/trust.py) may leave it: then the range takes in every point, with pyqtgraph's ticks."""
        values = np.concatenate([np.asarray(c, np.float64).ravel() for c in curves if c is not None and len(c)] or
                                [np.zeros(0)])
        values = values[np.isfinite(values)]
        low = min(0.0, float(values.min())) if values.size else 0.0
        high = max(1.0, float(values.max())) if values.size else 1.0
        self.setYRange(low, high, padding=0.04)
        minor = [(0.25, ""), (0.75, "")]
        self.getAxis("left").setTicks([[(0.0, "0"), (0.5, "0.5"), (1.0, "1")], minor] if (low, high) == (0.0, 1.0)
                                      else None)
        for line in self._grid[::2]:  # the horizontal lines only mean something on the 0 … 1 scale
            line.setVisible((low, high) == (0.0, 1.0))

    def legend_texts(self) -> list[str]:
        """The legend's lines (the areas under the curves), as shown."""
        return list(self._legend_texts)

    def sizeHint(self) -> QSize:
        return QSize(280, 150)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "legend"):  # not while being built
            self._follow_palette()

    def _follow_palette(self) -> None:
        pal = self.palette()
        text, base, accent = (pal.color(QPalette.ColorRole.Text), pal.color(QPalette.ColorRole.Base),
                              pal.color(QPalette.ColorRole.Highlight))
        self.setBackground(base)
        for name in ("left", "bottom"):
            axis = self.getAxis(name)
            axis.setPen(text)
            axis.setTextPen(text)
            axis.setLabel(axis.labelText, color=text.name())
        fill = QColor(accent)
        fill.setAlpha(60)
        for curve, sample in zip((self.map_curve, self.random_curve), self._samples, strict=True):
            pen = pg.mkPen(accent, width=2) if curve is self.map_curve else pg.mkPen(text, width=1.5,
                                                                                     style=Qt.PenStyle.DashLine)
            curve.setPen(pen)
            sample.setPen(pen)
        self.map_curve.setBrush(fill)
        faint = QColor(text)
        faint.setAlpha(40)
        for line in self._grid:
            line.setPen(pg.mkPen(faint, width=1))
        behind = QColor(base)
        behind.setAlpha(215)
        self.legend.setBrush(behind)
        self.legend.setLabelTextColor(text)


@dataclass(frozen=True)
class SanityMap:
    """One small map of the sanity row: the map, its caption, tooltip and rank correlation (None: the original)."""

    raw: np.ndarray
    caption: str
    tooltip: str
    spearman: float | None


def small_map(picture: np.ndarray, raw: np.ndarray, alpha: float, colormap: str, side: int = SMALL_MAP) -> np.ndarray:
    """``raw`` over a small copy of ``picture`` (RGB), composited as the main view does it."""
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    compositor = Compositor()
    compositor.set_image(cv2.resize(picture, (size[1], size[0]), interpolation=cv2.INTER_AREA))
    compositor.alpha, compositor.colormap = alpha, colormap
    compositor.set_map(display_map(raw, size)[0])
    return compositor.composited("overlay")


class SanityRow(QWidget):
    """The original map, then the map after each cascade step, with ρ (Spearman) under each.

    ``set_maps(picture, maps, alpha, colormap)``; ``set_look(alpha, colormap)`` recolours them.
    Laid out in as many columns as fit.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setHorizontalSpacing(6)
        self._grid.setVerticalSpacing(4)
        self._cells: list[QWidget] = []
        self.pictures: list[QLabel] = []
        self.captions: list[QLabel] = []
        self._picture: np.ndarray | None = None
        self._maps: list[SanityMap] = []
        self._look = (0.5, "jet")
        self._columns = 0
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        # As narrow as one small map: the row wraps into more rows rather than widening its card.
        self.setMinimumWidth(SMALL_MAP + 16)

    def set_maps(self, picture: np.ndarray | None, maps: Sequence[SanityMap], alpha: float, colormap: str) -> None:
        """Show ``maps`` over ``picture`` (RGB); an empty list clears the row."""
        for cell in self._cells:
            cell.deleteLater()
        self._cells, self.pictures, self.captions = [], [], []
        self._picture, self._maps, self._look = picture, list(maps), (alpha, colormap)
        for item in self._maps:
            cell, image, caption = self._cell(item)
            self._cells.append(cell)
            self.pictures.append(image)
            self.captions.append(caption)
        self._paint()
        self._columns = 0
        self._reflow()

    def set_look(self, alpha: float, colormap: str) -> None:
        """Opacity and colours of the main view: the small maps follow them."""
        if (alpha, colormap) != self._look:
            self._look = (alpha, colormap)
            self._paint()

    def maps(self) -> list[SanityMap]:
        return list(self._maps)

    def _cell(self, item: SanityMap) -> tuple[QWidget, QLabel, QLabel]:
        cell = QWidget(self)
        column = QVBoxLayout(cell)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(1)
        image = QLabel()
        image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        image.setFixedSize(SMALL_MAP, SMALL_MAP)
        rho = "" if item.spearman is None else (
            f"ρ = {item.spearman:.2f}" if math.isfinite(item.spearman) else "ρ: no map")
        caption = QLabel(f"{item.caption}\n{rho}" if rho else f"{item.caption}\n ")
        caption.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        font = caption.font()
        font.setPointSizeF(font.pointSizeF() * 0.85)
        caption.setFont(font)
        for widget in (cell, image, caption):
            widget.setToolTip(item.tooltip)
        column.addWidget(image, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addWidget(caption)
        return cell, image, caption

    def _paint(self) -> None:
        if self._picture is None:
            return
        alpha, colormap = self._look
        for label, item in zip(self.pictures, self._maps, strict=True):
            label.setPixmap(QPixmap.fromImage(rgb_to_qimage(small_map(self._picture, item.raw, alpha, colormap))))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._reflow()

    def sizeHint(self) -> QSize:
        return QSize(5 * (SMALL_MAP + 16), self.minimumHeight())

    def _columns_for(self, width: int) -> int:
        spacing = self._grid.horizontalSpacing()
        cell = max(SMALL_MAP, *(c.sizeHint().width() for c in self._cells)) + spacing
        return max(1, min(len(self._cells), (width + spacing) // cell))

    def _reflow(self) -> None:
        if not self._cells:
            self.setMinimumHeight(0)
            return
        columns = self._columns_for(self.width())
        if columns == self._columns:
            return
        self._columns = columns
        for cell in self._cells:
            self._grid.removeWidget(cell)
        for index, cell in enumerate(self._cells):
            self._grid.addWidget(cell, index // columns, index % columns, Qt.AlignmentFlag.AlignTop)
        # The height the rows need at this width, as a minimum: a scroll area does not ask
        # height-for-width, and less would squeeze each caption over its map.
        rows = math.ceil(len(self._cells) / columns)
        cell_h = max(c.sizeHint().height() for c in self._cells)
        self.setMinimumHeight(rows * cell_h + (rows - 1) * self._grid.verticalSpacing())
