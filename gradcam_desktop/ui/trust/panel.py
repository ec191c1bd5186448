"""The Trust panel's content (issue 8): can the map on screen be trusted?

Four cards, one per figure of ``core.trust``'s report, each with a traffic light (a dot and the
word "good", "weak" or "poor"), the verdict of ``core.verdicts`` in plain words, the figure
itself and its numbers:

* **deletion**: the class's probability as the map's hottest pixels are removed first, beside
  the same with pixels in random order (dashed); the area under each curve;
* **insertion**: the same, with the pixels shown first on a blurred picture;
* **Average Drop**: the probability on the picture and on the picture times the map;
* **sanity check**: the map on screen, then the map after each step that re-draws more of the
  model's weights at random, with its rank correlation (ρ) with the map on screen.

The widget only shows what it is given (``show_outcome``); ``trust.wiring`` asks the worker and
decides what to show. pyqtgraph is imported here, so this module is imported when the panel is
first opened, not when the window starts.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (QFrame, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QScrollArea, QSizePolicy,
                               QStyle, QVBoxLayout, QWidget)

from gradcam_desktop.core.trust import SCORE_HEADS, TrustReport
from gradcam_desktop.core.verdicts import BETTER, Verdict, as_evidence, drop_figure, quantity, verdicts
from gradcam_desktop.ui.trust.figures import CurvePlot, Light, SanityMap, SanityRow
from gradcam_desktop.session.trust_job import TrustOutcome

__all__ = ["FIGURES", "TrustCard", "TrustPanel", "card_titles", "curve_label", "figure_numbers", "sanity_maps"]

FIGURES = ("deletion", "insertion", "average_drop", "sanity")
TITLES = {"deletion": "Deletion  (the lower the curve, the better)",
          "insertion": "Insertion  (the higher the curve, the better)",
          "average_drop": "Average Drop",
          "sanity": "Sanity check  (random weights)"}

TIPS = {"deletion": "The picture's pixels are set to 0 in the map's order, hottest first (Petsiuk et al. 2018, RISE). "
                    "A map that finds what the model uses makes the curve fall fast: a small area under it.",
        "insertion": "Starting from a blurred picture, the real pixels come back in the map's order, hottest first "
                     "(Petsiuk et al. 2018). A good map makes the curve rise fast: a large area under it.",
        "average_drop": "The model sees the picture multiplied by the map (Chattopadhay et al. 2018, Grad-CAM++): "
                        "how much of its confidence is left?",
        "sanity": "Cascading randomisation (Adebayo et al. 2018): on a copy of the model, the weighted layers are "
                  "re-drawn at random from the top down and the map is made again. A map that depends on what the "
                  "model learned changes; one that stays shows the picture's edges."}
#: Narrowest a card gets before the cards wrap into fewer columns: four in a row under the picture
#: at 1280×800, where the Classes column beside the panel leaves it about 1000 pixels.
CARD_WIDTH = 225
#: Shares of a row of four cards: the curves need room, Average Drop is a number, the sanity
#: check's row of small maps the most.
_STRETCH = {"deletion": 6, "insertion": 6, "average_drop": 5, "sanity": 8}


def card_titles(kind: str) -> dict[str, str]:
    """The cards' titles for a map of ``kind`` ("class", "versus", "counterfactual"): an "against" map's
    curves should go the other way (``core.verdicts.BETTER``)."""
    better = BETTER.get(kind, BETTER["class"])
    titles = dict(TITLES, deletion=f"Deletion  (the {better['deletion']} the curve, the better)",
                  insertion=f"Insertion  (the {better['insertion']} the curve, the better)")
    if kind == "counterfactual":
        titles["average_drop"] = "Average Drop  (read against the class)"
    return titles


def figure_numbers(report: TrustReport, class_name: str, versus_name: str | None = None, head: str = "") -> dict[str, str]:
    """The numbers under each figure, in words (the curves' areas are in their plots' legends). A value or
    segmentation ``head`` has no probability: its figures are the explained score relative to the blurred
    picture's (``core.verdicts.quantity``), plain numbers rather than percentages."""
    of = quantity(report.kind, class_name, versus_name, head)
    if head in SCORE_HEADS:  # the curves' axis is short (``curve_label``): their scale is said under them
        return {
            "deletion": of,
            "insertion": of,
            "average_drop": (f"{of}: {report.original:.2f} on the picture, {report.masked:.2f} on the picture × map · "
                             f"Average Drop {report.average_drop:.1f} % · Increase: "
                             f"{'yes' if report.increase_in_confidence else 'no'}"),
            "sanity": "ρ: how alike each map is to the map on screen (1 = the same, 0 = unrelated)",
        }
    if report.kind == "counterfactual":  # the figures of 1 − p, which the verdict reads
        seen = as_evidence(report)
        measured = (f"Average Drop of 1 − {of}: {seen.average_drop:.1f} % · Increase in Confidence of 1 − {of}: "
                    f"{'yes' if seen.increase_in_confidence else 'no'}")
    else:
        measured = (f"Average Drop {report.average_drop:.1f} % · Increase in Confidence: "
                    f"{'yes' if report.increase_in_confidence else 'no'}")
    return {
        "deletion": "",
        "insertion": "",
        "average_drop": f"{of}: {report.original:.1%} on the picture, {report.masked:.1%} on the picture × map · {measured}",
        "sanity": "ρ: how alike each map is to the map on screen (1 = the same, 0 = unrelated)",
    }


def curve_label(kind: str, class_name: str, versus_name: str | None = None, head: str = "") -> str:
    """The curves' axis, short: "p('star')", "'circle' vs 'star'" for the share of a "rather than" map, and
    for a value or segmentation head what ``core.verdicts.quantity`` names without its scale ("value of
    'age'": the cards' numbers say 1 = the picture's, 0 = its blur's)."""
    if head in SCORE_HEADS:
        return quantity(kind, class_name, versus_name, head).split(" (", 1)[0]
    return f"'{class_name}' vs '{versus_name}'" if kind == "versus" and versus_name else f"p('{class_name}')"


def sanity_maps(original: np.ndarray, report: TrustReport) -> list[SanityMap]:
    """The sanity row: the map on screen, then the map after each cascade step."""
    maps = [SanityMap(np.asarray(original), "on screen", "The map on screen, with the model as it is", None)]
    for step in report.sanity:
        count = len(step.randomized)
        maps.append(SanityMap(step.raw, f"{count} layer{'s' if count != 1 else ''}",
                              "Weights re-drawn at random, from the top: " + ", ".join(step.randomized),
                              float(step.spearman)))
    return maps


class TrustCard(QFrame):
    """One figure: light and title, the verdict's sentence, the figure, its numbers."""

    def __init__(self, key: str, figure: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"trustCard_{key}")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.light = Light()
        self.title = QLabel(TITLES[key])
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.title.setWordWrap(True)  # never wider than the card: a narrow card wraps it
        self.sentence = QLabel()
        self.numbers = QLabel()
        for label in (self.sentence, self.numbers):
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        small = self.numbers.font()
        small.setPointSizeF(small.pointSizeF() * 0.9)
        self.numbers.setFont(small)
        self.figure = figure
        self.setToolTip(TIPS[key])
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.light)
        head.addWidget(self.title, 1)
        column = QVBoxLayout(self)
        column.setContentsMargins(8, 6, 8, 6)
        column.setSpacing(4)
        column.addLayout(head)
        column.addWidget(self.sentence)
        column.addWidget(figure, 1)
        column.addWidget(self.numbers)

    def set_verdict(self, verdict: Verdict | None, numbers: str = "") -> None:
        """The verdict's light and sentence and the figure's numbers (None: not known yet)."""
        self.light.set_light(verdict.light if verdict is not None else None)
        self.sentence.setText(verdict.sentence if verdict is not None else "")
        self.numbers.setText(numbers)
        self.numbers.setVisible(bool(numbers))


class _Numbers(QLabel):
    """Average Drop's figure is its numbers: a large percentage."""

    def __init__(self) -> None:
        super().__init__()
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        self.setFont(font)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)


class TrustPanel(QWidget):
    """The Trust panel's content (objectName "trustPanelContent"): a header and the four cards.

    ``show_pending()`` while the report is computed (``set_progress``), ``show_outcome`` once it
    is there, ``show_message`` for a failure or a hint, ``set_look`` to follow the main view's
    opacity and colours. ``cards``, ``plots`` and ``sanity`` are there to be read. Which map it
    is about is the dock's title (``trust.wiring``): the header row only shows while there is
    progress or a message, so the figures get the height.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trustPanelContent")
        self.status = QLabel()
        self.status.setObjectName("trustStatus")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setObjectName("trustProgress")
        self.progress.setFormat("Checking: %p %")
        self.progress.setFixedWidth(self.fontMetrics().horizontalAdvance("Checking: 100 %") * 2)
        self.progress.setVisible(False)
        self.plots = {"deletion": CurvePlot("share of pixels removed", "top"),
                      "insertion": CurvePlot("share of pixels shown", "bottom")}
        self.drop = _Numbers()
        self.sanity = SanityRow()
        figures: dict[str, QWidget] = {"deletion": self.plots["deletion"], "insertion": self.plots["insertion"],
                                       "average_drop": self.drop, "sanity": self.sanity}
        self.cards = {key: TrustCard(key, figures[key]) for key in FIGURES}
        self._outcome: TrustOutcome | None = None
        self._look = (0.5, "jet")
        self._columns = 0
        self._header = QWidget()
        header = QHBoxLayout(self._header)
        header.setContentsMargins(8, 2, 8, 0)
        header.addWidget(self.status, 1)
        header.addWidget(self.progress)
        self._grid = QGridLayout()
        self._grid.setContentsMargins(6, 2, 6, 6)
        self._grid.setSpacing(6)
        content = QWidget()
        content.setLayout(self._grid)
        self._scroll = QScrollArea()
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._scroll.setWidget(content)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self._header)
        column.addWidget(self._scroll, 1)
        self._reflow()
        self.clear("")

    # -- what is shown ---------------------------------------------------------------------------
    def clear(self, message: str) -> None:
        """No report: every card empty, ``message`` in the header."""
        self._outcome = None
        self._empty_cards()
        self.show_message(message)

    def show_pending(self) -> None:
        """A report is being computed (progress follows)."""
        self._outcome = None
        self._empty_cards()
        self.status.setText("Checking the map: removing and showing its parts, then re-drawing the model's weights…")
        self.set_progress(0, 1)

    def set_progress(self, done: int, total: int) -> None:
        """How far the report being computed is."""
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, max(1, total)))
        self.progress.setVisible(True)
        self._header.setVisible(True)

    def show_message(self, text: str) -> None:
        """A hint or a failure in the header (the progress bar goes away); "" hides the header."""
        self.progress.setVisible(False)
        self.status.setText(text)
        self._header.setVisible(bool(text))

    def show_outcome(self, outcome: TrustOutcome, *, class_name: str, original: np.ndarray,
                     picture: np.ndarray | None, versus_name: str | None = None, layers: bool = True,
                     head: str = "") -> None:
        """The report ``outcome`` of the map ``original`` (raw) of ``picture`` (RGB), explaining ``class_name``
        (rather than ``versus_name`` for a "rather than" map; an "against" map is read as one: ``report.kind``).
        ``layers`` False: the model is a file that shows no layers (no sanity check can re-draw them).
        ``head``: the map's head kind (``Prediction.head``) — a value or segmentation head's curves are its
        explained score, 1 = the picture's, 0 = its blur's."""
        self._outcome = outcome
        report = outcome.report
        self.show_message("")
        said = verdicts(report, class_name, versus_name, head)
        numbers = figure_numbers(report, class_name, versus_name, head)
        self._set_titles(report.kind)
        for key, card in self.cards.items():
            card.set_verdict(said.get(key), numbers[key])
        if "sanity" not in said:
            self.cards["sanity"].sentence.setText(
                "The sanity check was not run." if layers else
                "No sanity check for this model: it re-draws the model's weights layer by layer, and this file "
                "shows neither layers nor weights.")
        # The axis is short: "'circle' vs 'star'" for the share of a "rather than" map (the full words are below).
        label = curve_label(report.kind, class_name, versus_name, head)
        self.plots["deletion"].set_curves(report.deletion_curve, outcome.random_deletion, label=label,
                                          area=report.deletion_auc, random_area=report.random_deletion_auc)
        self.plots["insertion"].set_curves(report.insertion_curve, outcome.random_insertion, label=label,
                                           area=report.insertion_auc, random_area=report.random_insertion_auc)
        # In words, as its sentence says it: "drops 67 %" beside "… drops by 67 %", never a sign to misread.
        self.drop.setText(drop_figure(report))
        self.sanity.set_maps(picture, sanity_maps(original, report) if report.sanity else [], *self._look)

    def set_look(self, alpha: float, colormap: str) -> None:
        """The main view's opacity (0–1) and colours, for the sanity check's small maps."""
        self._look = (alpha, colormap)
        self.sanity.set_look(alpha, colormap)

    # -- read back (tests, scripts) --------------------------------------------------------------
    def outcome(self) -> TrustOutcome | None:
        """The report shown, or None."""
        return self._outcome

    def titles(self) -> dict[str, str]:
        return {key: card.title.text() for key, card in self.cards.items()}

    def drop_text(self) -> str:
        """Average Drop's figure as shown."""
        return self.drop.text()

    def sentences(self) -> dict[str, str]:
        return {key: card.sentence.text() for key, card in self.cards.items()}

    def words(self) -> dict[str, str]:
        return {key: card.light.word() for key, card in self.cards.items()}

    def numbers(self) -> dict[str, str]:
        """Each figure's numbers as shown (the curves': their legends' lines)."""
        shown = {key: card.numbers.text() for key, card in self.cards.items()}
        shown.update({key: "\n".join(plot.legend_texts()) for key, plot in self.plots.items()})
        return shown

    # -- layout ----------------------------------------------------------------------------------
    def _set_titles(self, kind: str) -> None:
        for key, title in card_titles(kind).items():
            self.cards[key].title.setText(title)

    def _empty_cards(self) -> None:
        for card in self.cards.values():
            card.set_verdict(None)
        for plot in self.plots.values():
            plot.set_curves(None, None)
        self.drop.setText("")
        self.sanity.set_maps(None, [], *self._look)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._reflow()

    def _reflow(self) -> None:
        """As many columns of cards as fit (4 in a wide bottom dock, 1 in a narrow side dock).

        Decided on the panel's width less a scroll bar, so a scroll bar coming and going cannot
        make the columns flip back and forth."""
        usable = self.width() - self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent) - 12
        columns = max(1, min(len(FIGURES), usable // CARD_WIDTH))
        if columns == self._columns:
            return
        self._columns = columns
        for card in self.cards.values():
            self._grid.removeWidget(card)
        for index, key in enumerate(FIGURES):
            self._grid.addWidget(self.cards[key], index // columns, index % columns)
        for column in range(len(FIGURES)):
            stretch = _STRETCH[FIGURES[column]] if columns == len(FIGURES) else int(column < columns)
            self._grid.setColumnStretch(column, stretch)
