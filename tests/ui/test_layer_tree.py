"""Widget tests of the layer tree, driven like a user would (class list and image view have their own files)."""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass, field

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from gradcam_desktop.ui.explore.layer_tree import LayerTreeModel, LayerTreeView

USER = Qt.ItemDataRole.UserRole


@dataclass
class Node:
    """Stands in for core.layers.LayerNode (the widgets only duck-type it)."""

    path: str
    name: str
    type: str
    output_shape: tuple
    eligible: bool
    children: list = field(default_factory=list)


def fake_tree() -> list[Node]:
    """input → conv → nested backbone (conv, pooled-away 1×1, inner block (conv)) → pool → dense."""
    inner = Node("backbone/block", "block", "Functional", (None, 7, 7, 64), True, [
        Node("backbone/block/conv_b", "conv_b", "Conv2D", (None, 7, 7, 64), True)])
    backbone = Node("backbone", "backbone", "Functional", (None, 7, 7, 64), True, [
        Node("backbone/conv_a", "conv_a", "Conv2D", (None, 14, 14, 32), True),
        Node("backbone/squeeze", "squeeze", "Conv2D", (None, 1, 1, 32), False),
        inner])
    return [
        Node("input", "input", "InputLayer", (None, 28, 28, 3), True),
        Node("flatten_early", "flatten_early", "Flatten", (None, 2352), False),
        Node("conv", "conv", "Conv2D", (None, 28, 28, 8), True),
        backbone,
        Node("pool", "pool", "GlobalAveragePooling2D", (None, 64), False),
        Node("dense", "dense", "Dense", (None, 10), False),
    ]


ALL_PATHS = ["input", "flatten_early", "conv", "backbone", "backbone/conv_a", "backbone/squeeze",
             "backbone/block", "backbone/block/conv_b", "pool", "dense"]
ELIGIBLE = ["input", "conv", "backbone", "backbone/conv_a", "backbone/block", "backbone/block/conv_b"]


# -- layer tree ------------------------------------------------------------------------------------
def test_layer_model_is_a_valid_qt_model(qapp, qtmodeltester):
    model = LayerTreeModel()
    model.set_layers(fake_tree(), "backbone/block/conv_b")
    qtmodeltester.check(model)
    model.clear()
    qtmodeltester.check(model)
    assert model.rowCount() == 0


def test_layer_model_roles_and_lookups(qapp):
    model = LayerTreeModel()
    model.set_layers(fake_tree(), "backbone/block/conv_b")
    assert model.eligible_paths() == ELIGIBLE
    assert [p for p, _ in model.all_paths()] == ALL_PATHS
    for path in ALL_PATHS:
        for column in range(3):
            assert model.index_for_path(path, column).data(USER) == path
    assert not model.index_for_path("nope").isValid()

    conv_b = model.index_for_path("backbone/block/conv_b")
    assert conv_b.parent().data(USER) == "backbone/block"
    assert conv_b.parent().parent().data(USER) == "backbone"
    assert [model.index_for_path("backbone", c).data() for c in range(3)] == ["backbone", "Functional", "7 × 7 × 64"]
    assert model.index_for_path("dense", 2).data() == "10"
    assert model.headerData(2, Qt.Orientation.Horizontal) == "Output shape"
    assert model.index_for_path("conv").data(Qt.ItemDataRole.ToolTipRole) == (
        "Grad-CAM can be shown at this layer: its output is a 28 × 28 grid of 8 features")
    assert model.index_for_path("pool").data(Qt.ItemDataRole.ToolTipRole) == (
        "No map here: this layer's output has no spatial grid")
    assert "1 × 1 grid" in model.index_for_path("backbone/squeeze").data(Qt.ItemDataRole.ToolTipRole)
    assert conv_b.data(Qt.ItemDataRole.FontRole).bold()
    assert model.index_for_path("conv").data(Qt.ItemDataRole.FontRole) is None


def test_non_eligible_rows_are_greyed_but_selectable(qapp):
    model = LayerTreeModel()
    model.set_layers(fake_tree(), None)
    disabled = QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
    for path, eligible in model.all_paths():
        index = model.index_for_path(path, 1)
        brush = index.data(Qt.ItemDataRole.ForegroundRole)
        if eligible:
            assert brush is None
        else:
            assert brush.color() == disabled
        assert index.flags() & Qt.ItemFlag.ItemIsSelectable
        # Only eligible rows carry the heat swatch.
        assert (model.index_for_path(path).data(Qt.ItemDataRole.DecorationRole) is not None) == eligible


@pytest.fixture
def tree(qtbot):
    view = LayerTreeView()
    qtbot.addWidget(view)
    view.resize(420, 400)
    view.set_layers(fake_tree(), "backbone/block/conv_b")
    view.show()
    qtbot.waitExposed(view)
    return view


def test_set_layers_expands_to_default_silently(qtbot):
    view = LayerTreeView()
    qtbot.addWidget(view)
    with qtbot.assertNotEmitted(view.layerChosen):
        view.set_layers(fake_tree(), "backbone/block/conv_b")
    assert view.objectName() == "layerTree"
    assert view.current_path() == "backbone/block/conv_b"
    model = view.layer_model()
    assert view.isExpanded(model.index_for_path("backbone"))
    assert view.isExpanded(model.index_for_path("backbone/block"))
    assert view.currentIndex().data(USER) == "backbone/block/conv_b"


def test_select_path_emits_once(tree, qtbot):
    with qtbot.waitSignal(tree.layerChosen) as blocker:
        assert tree.select_path("conv")
    assert blocker.args == ["conv"]
    with qtbot.assertNotEmitted(tree.layerChosen):
        tree.select_path("conv")
        tree.setCurrentIndex(tree.layer_model().index_for_path("conv", 2))  # same row, other column
    assert not tree.select_path("missing")


def test_up_down_keys_skip_non_eligible_layers(tree, qtbot):
    chosen: list[str] = []
    tree.layerChosen.connect(chosen.append)
    tree.select_path("input")
    for _ in range(6):
        qtbot.keyClick(tree, Qt.Key.Key_Down)
    # Down from the last eligible layer stays there: no greyed layer is ever reached.
    assert chosen == ELIGIBLE
    assert tree.current_path() == "backbone/block/conv_b"
    chosen.clear()
    for _ in range(2):
        qtbot.keyClick(tree, Qt.Key.Key_Up)
    assert chosen == ["backbone/block", "backbone/conv_a"]  # skips backbone/squeeze (1 × 1)


def test_clicking_a_greyed_layer_still_reports_it(tree, qtbot):
    index = tree.layer_model().index_for_path("pool")
    with qtbot.waitSignal(tree.layerChosen) as blocker:
        qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=tree.visualRect(index).center())
    assert blocker.args == ["pool"]
    qtbot.keyClick(tree, Qt.Key.Key_Up)  # from a greyed row, Up finds the nearest eligible above
    assert tree.current_path() == "backbone/block/conv_b"


def _python_entered(qt_call, *args) -> list[str]:
    """The Python functions Qt called back during ``qt_call(*args)`` (outermost calls only).

    Each one must take the interpreter lock, which the worker thread holds in 5 ms slices while
    it traces a layer: every callback in a repaint can stall the window that long.
    """
    entered: list[str] = []
    depth = 0

    def profile(frame, event, _arg) -> None:
        nonlocal depth
        if event == "call":
            # PySide converts enum arguments with the enum module's Python code: not a callback.
            if depth == 0 and frame.f_code.co_filename != enum.__file__:
                entered.append(frame.f_code.co_name)
            depth += 1
        elif event == "return":
            depth -= 1

    sys.setprofile(profile)
    try:
        qt_call(*args)
    finally:
        sys.setprofile(None)
    return entered


def test_painting_and_clicking_the_layer_tree_runs_no_python_model_code(tree, qtbot):
    import shiboken6

    model = tree.layer_model()
    for path, _ in model.all_paths():
        for column in range(3):
            # An item constructed in Python asks Python, the first time it is painted, whether it
            # overrides data(): the cells must be Qt's own items.
            assert not shiboken6.createdByPython(model.itemFromIndex(model.index_for_path(path, column)))
    tree.resize(420, 120)  # some rows only come into view by scrolling
    qtbot.wait(20)
    assert _python_entered(tree.viewport().repaint) == []
    tree.scrollToBottom()
    assert _python_entered(tree.viewport().repaint) == []
    chosen: list[str] = []
    tree.layerChosen.connect(chosen.append)
    index = model.index_for_path("dense")
    args = (tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
            tree.visualRect(index).center())
    assert _python_entered(QTest.mouseClick, *args) == ["currentChanged"]  # the one the window needs
    assert chosen == ["dense"]
    assert _python_entered(tree.viewport().repaint) == []


def test_greyed_rows_follow_a_palette_change(tree, qapp, qtbot):
    """The grey is stored in the items, so a theme switch (a new application palette) must redo it."""
    before = QPalette(qapp.palette())
    grey = before.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
    dark = QPalette(before)
    dark.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#6e6e6e"))
    assert grey != QColor("#6e6e6e")
    model = tree.layer_model()

    def colours(path: str) -> list:
        brushes = [model.index_for_path(path, c).data(Qt.ItemDataRole.ForegroundRole) for c in range(3)]
        return [None if b is None else b.color() for b in brushes]

    try:
        qapp.setPalette(dark)  # the widgets hear of it from the event loop
        qtbot.waitUntil(lambda: colours("pool") == [QColor("#6e6e6e")] * 3)
        assert colours("backbone/squeeze") == [QColor("#6e6e6e")] * 3  # nested rows too
        assert colours("conv") == [None] * 3
    finally:
        qapp.setPalette(before)
    qtbot.waitUntil(lambda: colours("pool") == [grey] * 3)


def test_layer_tree_show_path_is_silent_and_content_width_needs_no_scrolling(tree, qtbot):
    with qtbot.assertNotEmitted(tree.layerChosen):
        assert tree.show_path("conv")
    assert tree.current_path() == "conv"
    tree.resize(tree.content_width(), 400)
    qtbot.wait(20)
    assert not tree.horizontalScrollBar().isVisible()
    for column in range(3):
        assert tree.header().sectionSize(column) >= tree.sizeHintForColumn(column)
