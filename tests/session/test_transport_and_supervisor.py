"""The pipe between the window and the engine, and what the window remembers to start a new engine."""

from __future__ import annotations

import os
import signal
from multiprocessing import Pipe

import numpy as np

from gradcam_desktop.core.types import MapResult, Prediction
from gradcam_desktop.session import transport
from gradcam_desktop.session.custom_layers import CustomLayersRequest
from gradcam_desktop.session.engine import Restore
from gradcam_desktop.session.records import ModelInfo
from gradcam_desktop.session.host import describe_exit
from gradcam_desktop.session.requests import Explain, LoadModel
from gradcam_desktop.session.supervisor import MAX_RESTORES, MAX_STARTS, Supervisor


def _result(size: int) -> MapResult:
    rng = np.random.default_rng(0)
    prediction = Prediction(np.array([0.7, 0.3]), [(0, "a", 0.7), (1, "b", 0.3)], "softmax")
    return MapResult(raw=rng.random((7, 7), dtype=np.float32), layer="conv", class_index=0, class_name="a",
                     score=0.7, prediction=prediction, display=rng.integers(0, 256, (size, size), dtype=np.uint8))


def _files() -> set[str]:
    return {p.name for p in transport.FOLDER.glob(f"gradcam-{os.getpid()}-*")}


def test_large_arrays_cross_beside_the_pipe_equal_and_leave_no_file():
    ours, theirs = Pipe()
    big = _result(2048)  # a 4 MB display map: out of band
    before = _files()
    transport.send(ours, ("mapReady", (7, big)))
    assert len(_files() - before) == 1  # the display map waits in one shared-memory file
    name, (request, got) = transport.receive(theirs)
    assert (name, request) == ("mapReady", 7)
    assert np.array_equal(got.display, big.display) and np.array_equal(got.raw, big.raw)
    assert got.prediction.top == big.prediction.top
    assert _files() == before  # read once, then deleted


def test_small_messages_stay_in_the_pipe():
    ours, theirs = Pipe()
    before = _files()
    transport.send(ours, ("busy", ("x" * 1000,)))
    assert _files() == before
    assert transport.receive(theirs) == ("busy", ("x" * 1000,))


def test_leftovers_of_a_dead_writer_are_removed():
    path = transport.FOLDER / "gradcam-999999999-0"
    path.write_bytes(b"left by an engine that died")
    assert transport.remove_leftovers(999999999) == 1 and not path.exists()


def test_exit_codes_in_words():
    assert "out of memory" in describe_exit(-signal.SIGKILL)
    assert describe_exit(-signal.SIGSEGV) == "crashed (segmentation fault)"
    assert describe_exit(-signal.SIGABRT) == "aborted (SIGABRT)"
    assert describe_exit(3) == "exited with code 3"


def _loaded(supervisor: Supervisor, spec: str = "demo", generation: int = 4) -> LoadModel:
    load = LoadModel(spec)
    supervisor.sent(load)
    info = ModelInfo(request_id=load.id, generation=generation, source=spec, display_name="Demo shapes",
                     default_layer="conv", class_names=("a", "b"), input_size=(8, 8), channels=3, preprocess="raw",
                     sha256=None, head="softmax", trusted=False)
    supervisor.received("modelLoaded", (load.id, info))
    return load


def test_a_death_mid_map_fails_the_map_and_reopens_the_last_model():
    supervisor = Supervisor()
    _loaded(supervisor)
    old, new = Explain("img1", "conv", None), Explain("img2", "conv", None)
    supervisor.sent(old)
    supervisor.sent(new)  # supersedes the older map: only the newest is failed
    supervisor.received("working", ("making the map of b.png at layer conv",))
    line, lost, reopen = supervisor.lost("was killed (SIGKILL)")
    assert lost == [new.id] and reopen
    assert line == ("The engine was killed (SIGKILL) while making the map of b.png at layer conv with Demo shapes; "
                    "it is starting again with Demo shapes; pictures and choices are kept.")
    restore = supervisor.restore([("img1", "/p/a.png", "a.png")], reopen)
    assert (restore.model, restore.generation, restore.pictures) == ("demo", 4, [("img1", "/p/a.png", "a.png")])


def test_a_death_while_opening_a_model_reopens_the_previous_one_not_the_new_one():
    supervisor = Supervisor()
    _loaded(supervisor, "demo", 2)
    supervisor.sent(LoadModel("/models/new.keras"))
    supervisor.received("working", ("opening new.keras",))
    line, lost, reopen = supervisor.lost("aborted (SIGABRT)")
    assert "while opening new.keras" in line and "starting again with Demo shapes" in line
    assert len(lost) == 1 and reopen
    assert supervisor.restore([], reopen).model == "demo"


def test_custom_layer_files_that_ran_are_run_again_by_the_next_engine():
    supervisor = Supervisor()
    ran, refused = CustomLayersRequest("/layers/ok.py"), CustomLayersRequest("/layers/bad.py")
    for request in (ran, refused):
        supervisor.sent(request)
    supervisor.received("jobFinished", (ran.id, {"registered": ["Doubled"]}))
    supervisor.received("failed", (refused.id, "no classes"))
    assert supervisor.restore([], False).custom_layers == ["/layers/ok.py"]


def test_a_model_that_kills_every_engine_is_dropped_and_then_no_engine_is_started():
    supervisor = Supervisor()
    _loaded(supervisor)
    outcomes = []
    for _ in range(MAX_STARTS):
        _line, _lost, reopen = supervisor.lost("crashed (segmentation fault)")
        outcomes.append((reopen, supervisor.give_up()))
        restore = supervisor.restore([], reopen)
        assert isinstance(restore, Restore)
    assert [reopen for reopen, _ in outcomes] == [True] * MAX_RESTORES + [False] * (MAX_STARTS - MAX_RESTORES)
    assert [give_up for _, give_up in outcomes] == [False] * (MAX_STARTS - 1) + [True]


def test_an_answer_resets_the_count_of_deaths():
    supervisor = Supervisor()
    _loaded(supervisor)
    for _ in range(MAX_RESTORES + 3):
        _line, _lost, reopen = supervisor.lost("crashed (segmentation fault)")
        assert reopen
        explain = Explain("img1", "conv", None)
        supervisor.sent(explain)
        supervisor.received("mapReady", (explain.id, None))


def test_a_death_while_idle_says_so_rather_than_naming_the_last_map():
    supervisor = Supervisor()
    _loaded(supervisor)
    supervisor.received("working", ("making the map of a.png at layer conv",))
    supervisor.received("working", ("",))  # the engine went idle
    line, lost, reopen = supervisor.lost("was killed (SIGKILL)")
    assert line.startswith("The engine was killed (SIGKILL) while idle with Demo shapes;") and "a.png" not in line
    assert lost == [] and reopen
