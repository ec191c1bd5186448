"""The method picker and the score choice: how a map is computed and which score it explains.

``MethodBox`` lists ``core.cams.METHODS`` (title shown, method name as item data, the method's
one-sentence summary as tooltip). ``ScoreChoice`` sits under the class list: explain the class
(default), the class *rather than* another one (y_c − y_B, with a picker of B), or what speaks
*against* the class (−y_c) — for a value (regression) head, what pushes the value down; it also
carries the note that Eigen-CAM explains no class. Both
emit only on the user's choices (``activated``, ``clicked``), never when the window sets them.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QGridLayout, QLabel, QRadioButton, QSizePolicy, QVBoxLayout,
                               QWidget)

from gradcam_desktop.core import cams

__all__ = ["MethodBox", "ScoreChoice", "method_note", "other_class"]

#: The buttons' words and tooltips: (class, versus, against) for a classifier, and for a value head, whose
#: "class" is a value (an age): its map shows what raises it, "against" what pushes it down (−y).
_WORDS = {
    "": (("For the class", "What in the picture raises the class's score (the usual map)"),
         ("For it, rather than:", "Why the class rather than another one: what raises its score more than "
                                  "the other's (the difference of the two scores)"),
         ("Against the class", "What in the picture lowers the class's score (its negative)")),
    "value": (("For the value", "What in the picture raises the value (the usual map)"),
              ("Raises it more than:", "What raises this value more than the other one (the difference of the two)"),
              ("Against: what pushes it down", "What in the picture pushes the value down (its negative)")),
}

#: The combo boxes' narrowest width in characters: the dock may be squeezed that far (longer
#: titles and class names are then elided); they grow with the dock.
_BOX_CHARS = 10


def method_note(name: str) -> str:
    """What the window says under the class list about method ``name`` ("" when nothing)."""
    method = cams.METHODS.get(name)
    if method is not None and not method.class_specific:
        return (f"{method.title} is not class-specific: the map is the same for every class and score; "
                "the class list only shows the prediction.")
    if method is not None and method.stepwise:
        return f"{method.title} costs {method.cost}: it takes a while (progress in the status bar)."
    return ""


class MethodBox(QComboBox):
    """The CAM methods, objectName "methodBox"; ``methodChosen(name)`` on the user's choice."""

    methodChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("methodBox")
        for row, (name, method) in enumerate(cams.METHODS.items()):
            self.addItem(method.title, name)
            self.setItemData(row, method.summary, Qt.ItemDataRole.ToolTipRole)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(_BOX_CHARS)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._chosen = str(self.currentData())
        self.activated.connect(self._on_activated)
        self.currentIndexChanged.connect(self._show_summary)
        self._show_summary(self.currentIndex())

    def method(self) -> str:
        """The chosen method's name ("gradcam", "gradcam++", …)."""
        return str(self.currentData())

    def _on_activated(self, row: int) -> None:
        # Qt activates the current row again when its list closes on a greyed row: no new choice.
        name = str(self.itemData(row))
        if name != self._chosen:
            self._chosen = name
            self.methodChosen.emit(name)

    def set_offered(self, names: Sequence[str]) -> None:
        """Enable only the methods named (what the open model can run; empty: all); the others stay
        listed, greyed, their tooltip saying what they need."""
        model = self.model()
        for row, (name, method) in enumerate(cams.METHODS.items()):
            offered = not names or name in names
            item = model.item(row) if hasattr(model, "item") else None
            if item is not None:
                item.setEnabled(offered)
            why = "" if offered else f" Needs {method.needs}: this model does not show them."
            self.setItemData(row, method.summary + why, Qt.ItemDataRole.ToolTipRole)

    def offered(self, name: str) -> bool:
        row = self.findData(name)
        model = self.model()
        item = model.item(row) if row >= 0 and hasattr(model, "item") else None
        return item is not None and item.isEnabled()

    def set_method(self, name: str) -> bool:
        """Show method ``name`` as chosen (no signal); False for an unknown name."""
        row = self.findData(name)
        if row < 0:
            return False
        self.setCurrentIndex(row)
        self._chosen = name
        return True

    def _show_summary(self, row: int) -> None:
        self.setToolTip(f"How the map is computed. {self.itemData(row, Qt.ItemDataRole.ToolTipRole) or ''}")


def other_class(picked: int | None, explained: int | None, ranked: Sequence[int]) -> int | None:
    """The "rather than" class for a map of ``explained``: ``picked`` (the user's), unless that is the
    explained class itself or nothing was picked — then the most likely other class of ``ranked``
    (the picture's classes, most likely first). None when there is no other class."""
    if picked is not None and picked != explained:
        return picked
    return next((index for index in ranked if index != explained), None)


class ScoreChoice(QWidget):
    """Which score the map explains; objectName "scoreChoice". ``scoreChanged()`` on the user's choice.

    ``score()`` -> (versus class index or None, counterfactual). The "rather than" box never offers
    the class explained (``set_explained``); it shows the class the user picked, or — before they
    pick one, or on a picture whose explained class is the one picked — the picture's runner-up
    (``other_class``). The user's pick is kept for the next pictures.
    """

    scoreChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("scoreChoice")
        self.class_button = QRadioButton()
        self.class_button.setObjectName("scoreClass")
        self.versus_button = QRadioButton()
        self.versus_button.setObjectName("scoreVersus")
        self.versus_box = QComboBox()
        self.versus_box.setObjectName("versusBox")
        self.versus_box.setToolTip("The class to compare with")
        self.versus_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.versus_box.setMinimumContentsLength(_BOX_CHARS)
        self.versus_box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.against_button = QRadioButton()
        self.against_button.setObjectName("scoreAgainst")
        self.set_head(None)
        self.note = QLabel()
        self.note.setObjectName("methodNote")
        self.note.setWordWrap(True)
        self.note.setVisible(False)
        self._group = QButtonGroup(self)
        for button in (self.class_button, self.versus_button, self.against_button):
            self._group.addButton(button)
            button.clicked.connect(self._on_button)
        self.class_button.setChecked(True)
        self._names: list[str] = []
        self._picked: int | None = None  # the "rather than" class the user chose themselves
        self._explained: int | None = None  # the class the map explains: not offered in the box
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        title = QLabel("<b>Evidence</b>")
        grid.addWidget(title, 0, 0, 1, 2)
        grid.addWidget(self.class_button, 1, 0, 1, 2)
        grid.addWidget(self.versus_button, 2, 0, 1, 2)
        # The class to compare with under its button, indented like a radio button's text: beside
        # it, the two would need a wider dock than the class list does.
        indent = self.style().pixelMetric(self.style().PixelMetric.PM_ExclusiveIndicatorWidth) + 6
        grid.setColumnMinimumWidth(0, indent)
        grid.addWidget(self.versus_box, 3, 1)
        grid.addWidget(self.against_button, 4, 0, 1, 2)
        grid.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 4)
        layout.addLayout(grid)
        layout.addWidget(self.note)
        self.versus_box.activated.connect(self._on_versus_picked)

    def set_classes(self, names: Sequence[str]) -> None:
        """The classes a map can be compared with (a new model: back to explaining the class)."""
        self._names = [str(name) for name in names]
        self._picked = self._explained = None
        self._fill_box()
        self.class_button.setChecked(True)

    def set_head(self, head: str | None) -> None:
        """Word the choice for the open model's head (``Prediction.head``): a value head's "against" is
        what pushes the value down; every other head's are a class's."""
        words = _WORDS.get(head or "", _WORDS[""])
        for button, (text, tip) in zip((self.class_button, self.versus_button, self.against_button), words):
            button.setText(text)
            button.setToolTip(tip)

    def picked(self) -> int | None:
        """The "rather than" class the user chose (None: none yet), whatever the box shows for this picture."""
        return self._picked

    def set_explained(self, explained: int | None, ranked: Sequence[int] = ()) -> int | None:
        """The map explains class ``explained`` (of a picture whose classes are ``ranked``, most likely
        first): the box offers every other class and shows ``other_class``, which it returns."""
        if explained != self._explained:
            self._explained = explained
            self._fill_box()
        chosen = other_class(self._picked, explained, ranked)
        if chosen is None:  # nothing ranked: keep what the box shows, if it may be shown
            current = self.versus_box.currentData()
            chosen = int(current) if current is not None else None
        row = self.versus_box.findData(chosen) if chosen is not None else -1
        if row >= 0 and row != self.versus_box.currentIndex():
            self.versus_box.setCurrentIndex(row)
        return chosen if row >= 0 else None

    def _fill_box(self) -> None:
        """Every class but the explained one (a class "rather than" itself is no question)."""
        current = self.versus_box.currentData()
        self.versus_box.clear()
        for index, name in enumerate(self._names):
            if index != self._explained:
                self.versus_box.addItem(name, index)
        row = self.versus_box.findData(current) if current is not None else -1
        self.versus_box.setCurrentIndex(max(row, 0) if self.versus_box.count() else -1)
        # One class (one value) has nothing to be compared with: the choice is greyed, not an empty box.
        alone = self.versus_box.count() == 0 and bool(self._names)
        self.versus_button.setEnabled(not alone)
        self.versus_box.setEnabled(not alone)

    def score(self) -> tuple[int | None, bool]:
        """(the "rather than" class or None, whether the map explains what speaks against the class)."""
        if self.versus_button.isChecked() and self.versus_box.currentIndex() >= 0:
            return int(self.versus_box.currentData()), False
        return None, self.against_button.isChecked()

    def set_score(self, versus: int | None = None, counterfactual: bool = False) -> None:
        """Show a score as chosen (no signal): for scripts and restoring a state. A "rather than"
        class is kept as the user's pick (the explained class itself: the runner-up is shown)."""
        if versus is not None and 0 <= int(versus) < len(self._names):
            self._picked = int(versus)
            row = self.versus_box.findData(self._picked)
            if row >= 0:
                self.versus_box.setCurrentIndex(row)
            self.versus_button.setChecked(True)
        else:
            (self.against_button if counterfactual else self.class_button).setChecked(True)

    def set_note(self, text: str) -> None:
        """A remark under the choice (Eigen-CAM is no class's map, Score-CAM is slow); "" hides it."""
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _on_button(self) -> None:
        self.scoreChanged.emit()

    def _on_versus_picked(self, row: int) -> None:
        # Picking a class to compare with is choosing to compare.
        data = self.versus_box.itemData(row)
        self._picked = int(data) if data is not None else None
        self.versus_button.setChecked(True)
        self.scoreChanged.emit()
