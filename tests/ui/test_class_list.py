"""Widget tests of the class list: sorting, filtering, clicks, keep/follow, widths."""

from __future__ import annotations


import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtTest import QTest

from gradcam_desktop.ui.explore.class_list import ClassListModel, ClassListWidget, ProbabilityBarDelegate

USER = Qt.ItemDataRole.UserRole

# -- class list ------------------------------------------------------------------------------------
def imagenet_like_names() -> list[str]:
    names = [f"class_{i:04d}" for i in range(1000)]
    names[207], names[208], names[1] = "golden retriever", "Labrador retriever", "goldfish"
    return names


def test_class_model_sorts_and_reports(qtmodeltester):
    model = ClassListModel()
    model.set_classes(["cat", "dog", "fox"], [0.05, 0.931, 0.019])
    qtmodeltester.check(model)
    rows = [model.index(r, 0) for r in range(3)]
    assert [i.data() for i in rows] == ["dog", "cat", "fox"]
    assert [i.data(USER) for i in rows] == [1, 0, 2]
    assert rows[0].data(ClassListModel.ProbabilityRole) == pytest.approx(0.931)
    assert rows[0].data(Qt.ItemDataRole.ToolTipRole) == "dog: 93.1 %"
    model.set_classes(["cat", "dog"], None)  # no probabilities: index order
    assert [model.index(r, 0).data(USER) for r in range(2)] == [0, 1]
    with pytest.raises(ValueError):
        model.set_classes(["a", "b"], [1.0])


@pytest.fixture
def classes(qtbot):
    widget = ClassListWidget()
    qtbot.addWidget(widget)
    widget.resize(300, 400)
    probs = np.full(1000, 0.1 / 997)
    probs[[207, 208, 1]] = [0.6, 0.2, 0.1]
    widget.set_classes(imagenet_like_names(), probs)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def test_filter_box_finds_golden_retriever(classes, qtbot, qtmodeltester):
    assert classes.filter_edit.placeholderText() == "Find a class…"
    assert classes.view.objectName() == "classList" and classes.view.model() is classes.proxy
    with qtbot.assertNotEmitted(classes.classChosen):
        qtbot.keyClicks(classes.filter_edit, "Golden Ret")
    assert classes.proxy.rowCount() == 1
    assert classes.proxy.index(0, 0).data(USER) == 207
    qtmodeltester.check(classes.proxy)
    classes.filter_edit.setText("golden_retriever")  # Keras' ImageNet spelling matches too
    assert classes.proxy.rowCount() == 1
    classes.filter_edit.setText("gold")
    assert sorted(classes.proxy.index(r, 0).data(USER) for r in range(classes.proxy.rowCount())) == [1, 207]
    classes.filter_edit.clear()
    assert classes.proxy.rowCount() == 1000


def test_class_chosen_on_click(classes, qtbot):
    index = classes.proxy.index(1, 0)  # second most probable: Labrador
    with qtbot.waitSignal(classes.classChosen) as blocker:
        qtbot.mouseClick(classes.view.viewport(), Qt.MouseButton.LeftButton,
                         pos=classes.view.visualRect(index).center())
    assert blocker.args == [208]
    assert classes.current_class() == 208


def test_select_class_and_filter_do_not_loop(classes, qtbot):
    with qtbot.waitSignal(classes.classChosen) as blocker:
        assert classes.select_class(1)
    assert blocker.args == [1]
    with qtbot.assertNotEmitted(classes.classChosen):
        classes.select_class(1)
        classes.filter_edit.setText("retriever")  # hides the chosen class: not a new choice
        assert not classes.view.selectionModel().hasSelection()
        classes.filter_edit.clear()
        classes.set_classes(imagenet_like_names(), None)  # a new prediction keeps the choice
    assert classes.current_class() == 1
    assert classes.view.currentIndex().data(USER) == 1
    assert not classes.select_class(5000)


def test_probability_bars_are_painted(classes):
    classes.view.selectionModel().clear()
    image = classes.view.viewport().grab().toImage()
    row0 = classes.view.visualRect(classes.proxy.index(0, 0))  # 60 %: bar reaches 40 % of the width
    row3 = classes.view.visualRect(classes.proxy.index(3, 0))  # ~0 %: no bar
    x = int(row0.width() * 0.4)
    bar, empty = QColor(image.pixel(x, row0.center().y())), QColor(image.pixel(x, row3.center().y()))
    highlight = classes.view.palette().color(QPalette.ColorRole.Highlight)

    def distance(a: QColor, b: QColor) -> int:
        return abs(a.red() - b.red()) + abs(a.green() - b.green()) + abs(a.blue() - b.blue())

    assert distance(bar, highlight) < distance(empty, highlight)
    assert QColor(image.pixel(int(row0.width() * 0.7), row0.center().y())) == empty  # bar stops at 60 %


# -- keeping a class, widths that fit the content, pane titles, caption ---------------------------
def click_row(view, index) -> None:
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     view.visualRect(index).center())


def test_click_on_the_chosen_class_is_a_choice_too(classes, qtbot):
    classes.select_class(207)
    top = classes.proxy.index(0, 0)
    assert top.data(USER) == 207 and classes.view.currentIndex() == top
    with qtbot.waitSignal(classes.classChosen) as blocker:
        click_row(classes.view, top)  # the highlighted row: Qt sees no change, the user made a choice
    assert blocker.args == [207]
    emitted: list[int] = []
    classes.classChosen.connect(emitted.append)
    click_row(classes.view, classes.proxy.index(1, 0))  # another row: exactly one emission
    assert emitted == [208]
    classes.select_class(208)  # programmatic, same class: no emission
    assert emitted == [208]


def test_keep_and_follow_buttons(classes, qtbot):
    classes.select_class(1)
    assert classes.follow_button.isChecked() and classes.keep_button.text() == "Keep class: goldfish"
    with qtbot.assertNotEmitted(classes.followTopChosen):
        QTest.mouseClick(classes.follow_button, Qt.MouseButton.LeftButton)  # already following
    with qtbot.waitSignal(classes.classChosen) as blocker:
        QTest.mouseClick(classes.keep_button, Qt.MouseButton.LeftButton)
    assert blocker.args == [1]
    assert classes.follow_button.isChecked()  # the widget shows the mode the window sets
    classes.set_kept(True)
    assert classes.keep_button.isChecked() and classes.is_kept()
    with qtbot.waitSignal(classes.followTopChosen):
        QTest.mouseClick(classes.follow_button, Qt.MouseButton.LeftButton)
    classes.set_kept(False)
    assert classes.follow_button.isChecked() and not classes.is_kept()
    empty = ClassListWidget()
    qtbot.addWidget(empty)
    assert empty.keep_button.text() == "Keep class" and not empty.keep_button.isEnabled()


def test_class_list_at_its_content_width_shows_names_and_percentages_uncut(qtbot):
    widget = ClassListWidget()
    qtbot.addWidget(widget)
    names = ["cat", "a rather long class name", "dog"]
    widget.set_classes(names, [0.974, 0.016, 0.01])
    widget.resize(widget.content_width(), 300)
    widget.show()
    qtbot.waitExposed(widget)
    fm = widget.view.fontMetrics()
    pad = ProbabilityBarDelegate.PAD
    need = 4 + 4 * pad + fm.horizontalAdvance("100.0 %") + max(fm.horizontalAdvance(n) for n in names)
    assert widget.view.viewport().width() >= need
    widget.set_classes([f"class {i}" for i in range(1000)], None)  # a new list is measured again
    assert widget.content_width() < widget.view.viewport().width() + 200
