"""Issue 17, §2: the Trust panel reads an "against" map (and a "rather than" map) as what it is.

Driven through real input: Ctrl+T opens the panel, clicks on the Evidence radio buttons change the
map. An "against 'circle'" map shows what LOWERS p('circle'): deleting it first should raise p,
showing it first should keep p down; the lights follow core/verdicts.py's reading of 1 − p (checked
here from the report's own numbers) and no sentence calls it "what the model uses". Average Drop's
big figure and its sentence agree in words and sign.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from ui_window import click_radio, WINDOW_TIMEOUT, shown_window

from gradcam_desktop.core import verdicts as v

REPO = Path(__file__).resolve().parents[2]
PICTURE = REPO / "images" / "two_objects_circle_star.png"


@pytest.fixture
def demo(qtbot):
    w = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(w.resultShown, timeout=WINDOW_TIMEOUT):
        w.open_model("demo")
        w.open_images([PICTURE])
    assert w.shown_result().class_name == "circle"
    return w


def _report(qtbot, window, action, check=lambda _o: True):
    with qtbot.waitSignal(window.trust.reportShown, timeout=WINDOW_TIMEOUT, check_params_cb=check) as blocker:
        action()
    return blocker.args[0]


def _click_radio(window, name: str) -> None:
    click_radio(window, name)


def _light(good: bool, weak: bool) -> str:
    return LIGHT_WORD[v.GREEN if good else v.YELLOW if weak else v.RED]


LIGHT_WORD = {v.GREEN: "good", v.YELLOW: "weak", v.RED: "poor"}


def test_against_map_is_read_against_the_class(qtbot, demo):
    w = demo
    own = _report(qtbot, w, lambda: QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier))
    panel = w.trust.panel
    assert own.report.kind == "class" and panel.titles()["deletion"].endswith("(the lower the curve, the better)")
    outcome = _report(qtbot, w, lambda: _click_radio(w, "scoreAgainst"), lambda o: o.report.kind == "counterfactual")
    r = outcome.report
    assert w.ui.score_choice.against_button.isChecked() and w.shown_result().counterfactual
    assert w.ui.caption.caption().startswith("Evidence against 'circle'")
    assert "against 'circle'" in w.trust.dock.windowTitle().lower() or "Evidence against" in w.trust.dock.windowTitle()
    titles, sentences, words = panel.titles(), panel.sentences(), panel.words()
    assert titles["deletion"].endswith("(the higher the curve, the better)")
    assert titles["insertion"].endswith("(the lower the curve, the better)")
    said = " ".join(sentences.values())
    assert "what the model uses" not in said and "lose 'circle'" not in said
    assert "against 'circle'" in sentences["deletion"] or "against it" in sentences["deletion"]
    # The lights: the thresholds of a "for" map applied to 1 − p (what the against map is about).
    doubt = 1.0 - r.original
    ratio = (1.0 - r.deletion_auc) / doubt
    assert words["deletion"] == _light(ratio <= v.DELETION_GOOD, ratio <= v.DELETION_WEAK)
    kept = 1.0 - r.insertion_auc
    random_kept = 1.0 - r.random_insertion_auc
    assert words["insertion"] == _light(kept >= random_kept + v.INSERTION_MARGIN * doubt, kept >= random_kept)
    # Average Drop: figure and sentence in p('circle'), the same direction in both.
    figure = panel.drop_text()
    before, after = f"{100 * r.original:.0f} %", f"{100 * r.masked:.0f} %"
    if r.masked > r.original:
        assert figure == f"rises {before} → {after}" and f"rises from {before} to {after}" in sentences["average_drop"]
    else:
        assert figure == f"falls {before} → {after}" and "even less sure of 'circle'" in sentences["average_drop"]
    assert not figure.startswith(("−", "-", "+"))


def test_rather_than_map_is_read_as_the_share_of_the_two_classes(qtbot, demo):
    w = demo
    _report(qtbot, w, lambda: QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier))
    outcome = _report(qtbot, w, lambda: _click_radio(w, "scoreVersus"), lambda o: o.report.kind == "versus")
    shown = w.shown_result()
    c, b = shown.class_index, shown.versus_index
    p = shown.prediction.probabilities
    # X_0 of the deletion curve is the picture itself: its share is the map's own prediction's.
    assert outcome.report.deletion_curve[0] == pytest.approx(p[c] / (p[c] + p[b]), abs=1e-4)
    sentences = w.trust.panel.sentences()
    for key in ("deletion", "insertion", "average_drop"):
        assert f"'{shown.class_name}'" in sentences[key] and f"'{shown.versus_name}'" in sentences[key], key
    figure, said = w.trust.panel.drop_text(), sentences["average_drop"]
    assert figure.split()[0] in ("drops", "rises") and f"{figure.split()[0]} by {figure.split()[1]} %" in said
