"""Which output of the model is explained — for a model with several (an age and a gender head).

A row "Output [gender: (batch, 2), softmax ▾]" at the top of the Classes panel, shown only when the
open model has several outputs; an output that cannot be explained is listed greyed, with why.
Choosing another output reopens the model through it (core/outputs.py): the class list, layers,
maps, scores, trust, triage and exports are then that output's, and the views that held the other
output's results clear as for any other model.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

__all__ = ["OutputChoice", "attach"]


def attach(window: Any) -> OutputChoice:
    """Put the output row at the top of ``window``'s Classes panel; it follows the model open."""
    panel = window.ui.classes_dock.widget()
    choice = OutputChoice(window, panel)
    panel.layout().insertWidget(0, choice.row)
    return choice


class OutputChoice(QObject):
    """The output row: filled from the model open, hidden for a one-output model."""

    def __init__(self, window: Any, parent: QWidget) -> None:
        super().__init__(window)
        self.window = window
        self.row = QWidget(parent)
        self.row.setObjectName("outputRow")
        self.box = QComboBox(self.row)
        self.box.setObjectName("outputBox")
        self.box.setToolTip("This model has several outputs: the maps explain the one chosen here")
        self.box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.box.setMinimumContentsLength(12)
        label = QLabel("Output", self.row)
        label.setBuddy(self.box)
        layout = QHBoxLayout(self.row)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.setSpacing(6)
        layout.addWidget(label)
        layout.addWidget(self.box, 1)
        self.row.hide()
        self.box.activated.connect(self._chosen)  # the user's choice only, not our own filling
        window.state.subscribe(self._follow_state)

    def _follow_state(self, change: str) -> None:
        if change != "model":
            return
        info = self.window.state.model
        outputs = tuple(getattr(info, "outputs", ()) or ()) if info is not None else ()
        self.box.clear()
        self.row.setVisible(bool(outputs) and self.window.state.opening is None)
        if not outputs:
            return
        items = self.box.model()
        for name, text, usable in outputs:
            # "kind — softmax" in the box (the panel is narrow); the shape and any reason in the tooltip.
            kind = text.split("), ", 1)[-1] if "), " in text else text
            self.box.addItem(f"{name} — {kind}" if usable else f"{name} — cannot be explained", name)
            self.box.setItemData(self.box.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
            if not usable and isinstance(items, QStandardItemModel):
                items.item(self.box.count() - 1).setEnabled(False)
        current = self.box.findData(info.output)
        if current >= 0:
            self.box.setCurrentIndex(current)

    def _chosen(self, index: int) -> None:
        info = self.window.state.model
        name = self.box.itemData(index, Qt.ItemDataRole.UserRole)
        if info is None or name is None or name == info.output:
            return
        self.window.open_model(info.source, bool(info.trusted), output=str(name))

    def outputs(self) -> list[str]:
        """The names listed (tests)."""
        return [str(self.box.itemData(i)) for i in range(self.box.count())]
