"""SessionState: the one observable record of what is open and chosen (Qt-free), and the query it makes."""

from __future__ import annotations

import pytest

from gradcam_desktop.session.records import ModelInfo, Picture
from gradcam_desktop.session.requests import MapSpec
from gradcam_desktop.session.state import CHANGES, SessionState


def _model(name="demo", generation=1, default="last_conv") -> ModelInfo:
    return ModelInfo(request_id=1, generation=generation, source=name, display_name=name, default_layer=default,
                     class_names=("a", "b"), input_size=(32, 32), channels=3, preprocess="raw", sha256=None,
                     head="softmax", trusted=False)


def _pictures(*names) -> list[Picture]:
    return [Picture(f"k-{n}", n, None, (), None, None) for n in names]  # type: ignore[arg-type]


@pytest.fixture
def state():
    s = SessionState()
    s.changes = []
    s.subscribe(s.changes.append)
    return s


def test_every_change_is_announced_with_what_changed(state):
    state.open_requested("demo")
    assert state.opening == "demo" and not state.ready()
    state.set_model(_model())
    assert state.layer == "last_conv" and state.kept_class is None and state.ready()
    first = state.add(_pictures("x", "y"))
    assert first == 0
    state.select(1)
    state.choose(kept_class=1)
    state.choose(layer="conv1")
    assert (state.layer, state.kept_class) == ("conv1", 1)  # what is not given stays
    assert state.changes == ["model", "model", "pictures", "picture", "choice", "choice"]
    assert set(state.changes) <= CHANGES


def test_a_new_model_resets_layer_and_class_and_a_failed_open_keeps_the_old_one(state):
    state.set_model(_model("one"))
    state.choose(layer="conv1", kept_class=1)
    state.open_requested("two")
    state.open_failed()
    assert state.model.source == "one" and state.layer == "conv1" and state.kept_class == 1 and state.ready()
    state.set_model(_model("two", generation=2, default="top"))
    assert (state.layer, state.kept_class) == ("top", None)
    state.set_model(None)  # the engine could not reopen it
    assert state.model is None and state.layer is None and not state.ready()


@pytest.mark.parametrize(("current", "removed", "after", "picture_changed"), [
    (1, 0, 0, False),   # before the current one: it keeps being current, one place earlier
    (0, 2, 0, False),   # after it: nothing moves
    (1, 1, 1, True),    # the current one: the next one takes its place
    (2, 2, 1, True),    # the current and last one: the previous one
])
def test_removing_a_picture_keeps_the_right_one_current(state, current, removed, after, picture_changed):
    state.add(_pictures("x", "y", "z"))
    state.select(current)
    names = ["x", "y", "z"]
    # The picture that should be current afterwards: the same one, or the one that took its place.
    expected = names[current] if not picture_changed else (names[removed + 1] if removed + 1 < 3 else names[removed - 1])
    state.changes.clear()
    gone = state.remove(removed)
    assert gone.name == names[removed] and len(state.pictures) == 2
    assert state.index == after and state.current().name == expected
    assert state.changes == (["pictures", "picture"] if picture_changed else ["pictures"])


def test_removing_the_last_picture_leaves_none_current(state):
    state.add(_pictures("x"))
    state.select(0)
    state.remove(0)
    assert state.index == -1 and state.current() is None
    assert state.remove(0) is None and state.select(0) is False  # nothing there: nothing changes


def test_the_query_is_the_current_picture_at_the_chosen_layer_and_class(state):
    assert state.query() is None  # no model, no picture
    state.set_model(_model())
    state.add(_pictures("x", "y"))
    assert state.query() is None  # no picture current yet
    state.select(1)
    state.choose(kept_class=0)
    assert state.query("layercam", versus=1) == MapSpec("k-y", "last_conv", 0, "layercam", 1, False)
    state.open_requested("other")
    assert state.query() is None  # while another model opens, the old one must not answer


def test_unsubscribing_stops_the_calls(state):
    heard = []
    stop = state.subscribe(heard.append)
    state.choose(layer="a")
    stop()
    state.choose(layer="b")
    assert heard == ["choice"]
