"""The line above the picture that says what the map shows, and warns when it may mislead."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from gradcam_desktop.core import annotate, cams
from gradcam_desktop.core.types import MapResult

__all__ = ["CaptionBar", "pane_title"]


def pane_title(result: MapResult) -> str:
    """The map pane's title in side-by-side view: what the map explains, in a few words (a value head's
    "against" map: what pushes the value down; a segmentation model's region: "over the region")."""
    if not result.method or result.method not in cams.METHODS or cams.METHODS[result.method].class_specific:
        if result.score_kind == "counterfactual" and result.prediction.head == "value":
            text = f"What pushes '{result.class_name}' down"
        elif result.score_kind == "counterfactual":
            text = f"Evidence against '{result.class_name}'"
        elif result.score_kind == "versus":
            text = f"'{result.class_name}' rather than '{result.versus_name}'"
        else:
            text = f"Evidence for '{result.class_name}'"
        if result.region is not None:
            text += " over the region"
    else:
        text = "Main pattern (no class)"
    return text if result.method == "gradcam" else f"{annotate.method_title(result.method)}: {text}"


class CaptionBar(QLabel):
    """"Evidence for 'star' (0.4 %) · layer last_conv" and, in a caution colour, why that may
    mislead ("unlikely class: …", "flat map: …") — objectName "mapCaption".

    ``set_result(result | None)``; ``caption()`` and ``warning()`` give the plain texts shown.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mapCaption")
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setContentsMargins(10, 6, 10, 6)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # wraps instead of widening the window
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.setFont(font)
        self.setToolTip(annotate.SCALE_NOTE)
        self._caption = ""
        self._warning = ""
        self._note_line = ""
        self.set_result(None)

    def set_result(self, result: MapResult | None) -> None:
        """Describe ``result`` (None: no map, the bar keeps its height but says nothing)."""
        self._caption = annotate.caption(result) if result is not None else ""
        self._warning = (annotate.warning(result) or "") if result is not None else ""
        self._note_line = ""
        self._show()

    def set_note_line(self, text: str) -> None:
        """One more line under the caption about the map shown (the inside share on a marked object); "" removes it."""
        self._note_line = text if self._caption else ""
        self._show()

    def note_line(self) -> str:
        """The extra line shown ("" when there is none)."""
        return self._note_line

    def _show(self) -> None:
        html = f"<b>{escape(self._caption)}</b>" if self._caption else "&nbsp;"
        if self._warning:
            note = self._warning[0].upper() + self._warning[1:]
            html += f"<br><span style='color:{self._caution_colour()}'>{escape(note)}</span>"
        if self._note_line:
            html += f"<br>{escape(self._note_line)}"
        self.setText(html)

    def show_note(self, text: str) -> None:
        """No map, and why, in the palette's muted colour ("Opening model …"): never a caption."""
        self._caption = self._warning = self._note_line = ""
        colour = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        self.setText(f"<span style='color:{colour}'>{escape(text)}</span>" if text else "&nbsp;")

    def caption(self) -> str:
        """The caption shown ("" without a map)."""
        return self._caption

    def warning(self) -> str:
        """The warning shown ("" when there is none)."""
        return self._warning

    def _caution_colour(self) -> str:
        # Dark orange on a light window, light orange on a dark one: readable on either.
        dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
        return "#ffb454" if dark else "#a64b00"
