"""Issue 17, §1: "rather than" a class that a picture's own top class turns out to be.

A new user at 1280×800 compared with 'star' (Evidence: "For it, rather than: star") and stepped to
a picture whose top class is star: a modal said "'star' cannot be compared with itself", the map
was gone and the class list still showed the previous picture. Now the "rather than" box never
offers the explained class, and on such a picture the runner-up stands in (said in the status
bar, no dialog); the radio, the box, the caption and the map agree. Everything is driven by real
input events: clicks on the radio's indicator and on the box's popup rows, Left/Right keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QComboBox
from ui_window import WINDOW_TIMEOUT, click_combo_row, click_radio, shown_window

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
DEMO_CLASSES = ["circle", "square", "triangle", "star"]
STAR = DEMO_CLASSES.index("star")


@pytest.fixture
def demo(qtbot):
    """1280×800, the demo model; pictures: circle and star (top: circle), star (top: star), circle."""
    w = shown_window(qtbot, 1280, 800)
    first = _shown(qtbot, w, lambda: (w.open_model("demo"), w.open_images(
        [IMAGES / "two_objects_circle_star.png", IMAGES / "star.png", IMAGES / "circle.png"])))
    assert first.class_name == "circle"  # the scenario's premise
    return w


def _shown(qtbot, window, action, check=lambda _r: True):
    with qtbot.waitSignal(window.resultShown, timeout=WINDOW_TIMEOUT, check_params_cb=check) as blocker:
        action()
    return blocker.args[0]


def _click_radio(window, name: str) -> None:
    click_radio(window, name)


def _versus_box(window) -> QComboBox:
    box = window.findChild(QComboBox, "versusBox")
    assert box is not None and box.isVisible()
    return box


def _pick_versus(qtbot, window, name: str) -> None:
    """Choose the "rather than" class in its list with real clicks."""
    box = _versus_box(window)
    click_combo_row(qtbot, box, box.findText(name))


def _offered(window) -> list[str]:
    box = _versus_box(window)
    return [box.itemText(row) for row in range(box.count())]


def _step(qtbot, window, key):
    window.ui.view.setFocus()
    return _shown(qtbot, window, lambda: QTest.keyClick(window.ui.view, key))


def _class_rows(window) -> list[str]:
    proxy = window.ui.class_list.proxy
    return [proxy.index(row, 0).data() for row in range(proxy.rowCount())]


def _assert_agree(window, result) -> None:
    """Radio, box, caption, map and class list all tell the same story about ``result``."""
    score = window.ui.score_choice
    assert score.versus_button.isChecked() and not score.against_button.isChecked()
    assert result.score_kind == "versus" and result.versus_index != result.class_index
    assert result.class_name not in _offered(window)  # never "star rather than star"
    assert _versus_box(window).currentText() == result.versus_name
    assert window.map_choice()["versus"] == result.versus_index
    caption = window.ui.caption.caption()
    assert f"'{result.class_name}'" in caption and f"rather than '{result.versus_name}'" in caption
    assert window.shown_result() is result and result.display is not None
    assert _class_rows(window)[0] == result.prediction.top[0][1]  # this picture's predictions, most likely first


def test_rather_than_the_top_class_falls_back_to_the_runner_up(qtbot, demo):
    w = demo
    assert "circle" not in _offered(w)  # the class explained is not offered
    versus = _shown(qtbot, w, lambda: _click_radio(w, "scoreVersus"), lambda r: r.score_kind == "versus")
    _assert_agree(w, versus)
    picked = _shown(qtbot, w, lambda: _pick_versus(qtbot, w, "star"), lambda r: r.versus_index == STAR)
    _assert_agree(w, picked)

    with qtbot.assertNotEmitted(w.errorShown, wait=200):
        # A picture whose top class is star: compared with its runner-up, said in the status bar.
        on_star = _step(qtbot, w, Qt.Key.Key_Right)
        assert Path(on_star.image).name == "star.png" and on_star.class_name == "star"
        runner_up = next(index for index, _n, _p in on_star.prediction.top if index != STAR)
        assert on_star.versus_index == runner_up
        _assert_agree(w, on_star)
        status = w.ui.status_label.text()
        assert "star.png" in status and "runner-up" in status and f"'{on_star.versus_name}'" in status
        assert "star" not in _offered(w)
        # The next picture's top class is circle: 'star' (the user's pick) again.
        on_circle = _step(qtbot, w, Qt.Key.Key_Right)
        assert Path(on_circle.image).name == "circle.png"
        assert (on_circle.class_name, on_circle.versus_name) == ("circle", "star")
        _assert_agree(w, on_circle)
        assert "runner-up" not in w.ui.status_label.text()
        # Back to star.png (its classes are known now): the same fallback, every time.
        again = _step(qtbot, w, Qt.Key.Key_Left)
        assert (Path(again.image).name, again.class_name, again.versus_index) == ("star.png", "star", runner_up)
        _assert_agree(w, again)
        assert "runner-up" in w.ui.status_label.text()


def test_a_click_on_the_strip_to_a_star_picture_and_back_to_the_class(qtbot, demo):
    w = demo
    _shown(qtbot, w, lambda: _click_radio(w, "scoreVersus"), lambda r: r.score_kind == "versus")
    _shown(qtbot, w, lambda: _pick_versus(qtbot, w, "star"), lambda r: r.versus_index == STAR)
    view = w.ui.strip  # a QListWidget of thumbnails
    with qtbot.assertNotEmitted(w.errorShown, wait=200):
        index = view.model().index(1, 0)
        view.scrollTo(index)
        on_star = _shown(qtbot, w, lambda: QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton,
                                                            Qt.KeyboardModifier.NoModifier,
                                                            view.visualRect(index).center()))
    assert Path(on_star.image).name == "star.png" and on_star.versus_index not in (None, STAR)
    _assert_agree(w, on_star)
    # "For the class" and "Against" by clicks: the radio, the caption and the map follow.
    own = _shown(qtbot, w, lambda: _click_radio(w, "scoreClass"), lambda r: r.score_kind == "class")
    assert w.ui.score_choice.class_button.isChecked() and w.ui.caption.caption().startswith("Evidence for 'star'")
    assert own.class_name == "star"
    against = _shown(qtbot, w, lambda: _click_radio(w, "scoreAgainst"), lambda r: r.counterfactual)
    assert w.ui.score_choice.against_button.isChecked()
    assert w.ui.caption.caption().startswith("Evidence against 'star'") and against.versus_index is None
