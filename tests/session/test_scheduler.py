"""The scheduler's rules, driven by hand with a fake clock: no thread, no model, no sleep."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from gradcam_desktop.session.requests import CancelJob, Explain, ExportAll, LoadImages, LoadModel, Shutdown
from gradcam_desktop.session.scheduler import Job, Run, Scheduler, Step, Wait

SCHEDULER = Path(__file__).resolve().parents[2] / "gradcam_desktop" / "session" / "scheduler.py"


class Counting(Job):
    """A job of ``total`` steps that records each step in ``log``."""

    def __init__(self, job_id, total, log, *, priority=0, delay=0.0, group=None):
        super().__init__(job_id)
        self.total, self.done, self.log = total, 0, log
        self.priority, self.delay, self.group = priority, delay, group
        self.wound_up = False

    def step(self):
        if self.cancelled:
            self.wound_up = True
            self.log.append(("wind-up", self.id))
            return False
        self.done += 1
        self.log.append(("step", self.id, self.done))
        return self.done < self.total

    def progress(self):
        return self.done, self.total, f"item {self.done}"


def drive(scheduler, now, log, *, limit=100):
    """Do what the scheduler says at time ``now`` until it says Wait; returns the Wait."""
    for _ in range(limit):
        action = scheduler.next_action(now)
        if isinstance(action, Wait):
            return action
        if isinstance(action, Run):
            log.append(("run", action.request))
        else:
            scheduler.stepped(action.job, action.job.step())
    raise AssertionError("the scheduler never waited")


def test_scheduler_imports_neither_qt_nor_threads():
    """Qt-free and thread-free by construction: its imports, and a fresh interpreter's modules."""
    tree = ast.parse(SCHEDULER.read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"PySide6", "shiboken6", "threading", "queue", "time", "concurrent", "tensorflow"}
    code = ("import sys, gradcam_desktop.session.scheduler, gradcam_desktop.session.requests, gradcam_desktop.session.map_cache\n"
            "print(sorted(m for m in ('PySide6', 'tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_newest_explain_wins_and_other_requests_are_never_dropped():
    scheduler = Scheduler()
    explains = [Explain("img1", None, i) for i in range(5)]
    load, model, shutdown = LoadImages(["x.png"]), LoadModel("demo"), Shutdown()
    pinned = Explain("img1", None, 0, supersedable=False)
    export, cancel = ExportAll(["img1"], "/out", None, None, None), CancelJob(7)
    for request in explains[:2] + [load] + explains[2:] + [model, pinned, export, cancel, shutdown]:
        scheduler.submit(request)
    served = []
    drive(scheduler, 0.0, served)
    assert [r for _kind, r in served] == [load, explains[-1], model, pinned, export, cancel, shutdown]
    assert scheduler.take_superseded() == explains[:-1]
    assert scheduler.take_superseded() == []


def test_an_explain_is_only_superseded_by_a_newer_one_still_pending():
    scheduler = Scheduler()
    first, second = Explain("a", None, 0), Explain("a", None, 1)
    scheduler.submit(first)
    assert scheduler.next_action(0.0) == Run(first)  # handed out: it runs whatever comes next
    scheduler.submit(second)
    assert scheduler.next_action(0.1) == Run(second)
    assert scheduler.take_superseded() == []


def test_nothing_to_do_waits_without_timeout():
    assert Scheduler().next_action(5.0) == Wait(None)


def test_requests_go_before_job_steps_and_the_job_resumes_between_them():
    scheduler, log = Scheduler(), []
    job = Counting(1, 4, log)
    scheduler.add_job(job)
    click = Explain("img1", "conv", 2)
    scheduler.submit(click)
    assert scheduler.next_action(0.0) == Run(click)  # submitted after the job, still first
    assert scheduler.next_action(0.0) == Step(job)
    scheduler.stepped(job, job.step())
    clicks = [Explain("img1", "conv", c) for c in range(3)]
    for c in clicks:
        scheduler.submit(c)
    assert scheduler.next_action(0.0) == Run(clicks[-1])  # the newest of the clicks, before the job
    drive(scheduler, 0.0, log)
    assert log == [("step", 1, 1), ("step", 1, 2), ("step", 1, 3), ("step", 1, 4)]
    assert scheduler.jobs() == [] and scheduler.next_action(0.0) == Wait(None)


def test_job_delay_counts_from_the_end_of_the_last_request():
    scheduler, log = Scheduler(), []
    precompute = Counting(1, 2, log, delay=0.1)
    request = Explain("img1", None, None)
    scheduler.submit(request)
    assert scheduler.next_action(10.0) == Run(request)
    scheduler.add_job(precompute)  # as the worker does while handling the request
    wait = scheduler.next_action(10.05)  # the request took 50 ms
    assert isinstance(wait, Wait) and wait.timeout == pytest.approx(0.1)
    wait = scheduler.next_action(10.12)
    assert isinstance(wait, Wait) and wait.timeout == pytest.approx(0.03)
    assert scheduler.next_action(10.15) == Step(precompute)
    scheduler.stepped(precompute, precompute.step())
    # A new request restarts the idle clock: the second step waits again.
    again = Explain("img1", None, 1)
    scheduler.submit(again)
    assert scheduler.next_action(10.16) == Run(again)
    wait = scheduler.next_action(10.2)
    assert isinstance(wait, Wait) and wait.timeout == pytest.approx(0.1)
    assert scheduler.next_action(10.3) == Step(precompute)


def test_a_job_without_delay_does_not_wait_for_idleness():
    scheduler, log = Scheduler(), []
    request = Explain("img1", None, None)
    scheduler.submit(request)
    assert scheduler.next_action(3.0) == Run(request)
    export = Counting(2, 1, log, delay=0.0)
    scheduler.add_job(export)
    assert scheduler.next_action(3.0) == Step(export)


def test_lower_priority_first_then_the_oldest():
    scheduler, log = Scheduler(), []
    export = Counting(1, 2, log, priority=1)
    older = Counting(2, 1, log, priority=0)
    newer = Counting(3, 1, log, priority=0)
    for job in (export, older, newer):
        scheduler.add_job(job)
    drive(scheduler, 0.0, log)
    assert [entry[1] for entry in log] == [2, 3, 1, 1]


def test_cancel_winds_the_job_up_at_once_even_within_its_delay():
    scheduler, log = Scheduler(), []
    request = Explain("img1", None, None)
    scheduler.submit(request)
    scheduler.next_action(0.0)
    job = Counting(9, 5, log, delay=60.0)
    scheduler.add_job(job)
    assert isinstance(scheduler.next_action(0.0), Wait)
    assert scheduler.cancel_job(9)
    assert scheduler.next_action(0.0) == Step(job)
    scheduler.stepped(job, job.step())
    assert job.wound_up and log == [("wind-up", 9)]
    assert scheduler.jobs() == [] and not scheduler.cancel_job(9)


def test_a_new_job_of_a_group_replaces_the_older_one():
    scheduler, log = Scheduler(), []
    first = Counting(1, 3, log, group="precompute", delay=0.1)
    second = Counting(2, 1, log, group="precompute", delay=0.1)
    other = Counting(3, 1, log, group=None, delay=0.1)
    scheduler.add_job(other)
    scheduler.add_job(first)
    scheduler.add_job(second)
    assert first.cancelled and not second.cancelled and not other.cancelled
    drive(scheduler, 0.0, log)
    assert log == [("wind-up", 1), ("step", 3, 1), ("step", 2, 1)]


def test_cancel_group_and_cancel_all():
    scheduler, log = Scheduler(), []
    jobs = [Counting(1, 3, log, group="precompute"), Counting(2, 3, log), Counting(3, 3, log, group="precompute")]
    for job in jobs:
        scheduler.add_job(job)
    scheduler.cancel_group("precompute")
    assert [job.cancelled for job in jobs] == [True, False, True]
    scheduler.cancel_all()
    drive(scheduler, 0.0, log)
    assert log == [("wind-up", 1), ("wind-up", 2), ("wind-up", 3)]


def test_progress_is_the_jobs_own_report_between_steps():
    scheduler, log = Scheduler(), []
    job = Counting(4, 3, log)
    scheduler.add_job(job)
    seen = [job.progress()]
    while isinstance(action := scheduler.next_action(0.0), Step):
        scheduler.stepped(action.job, action.job.step())
        seen.append(action.job.progress())
    assert seen == [(0, 3, "item 0"), (1, 3, "item 1"), (2, 3, "item 2"), (3, 3, "item 3")]


def test_pending_is_a_snapshot():
    scheduler = Scheduler()
    request = LoadModel("demo")
    scheduler.submit(request)
    snapshot = scheduler.pending()
    snapshot.clear()
    assert scheduler.pending() == [request]


def test_a_pinned_explain_is_not_dropped_by_a_newer_click():
    scheduler = Scheduler()
    pinned, click = Explain("a", None, 0, supersedable=False), Explain("a", None, 1)
    scheduler.submit(pinned)
    scheduler.submit(click)
    served = []
    drive(scheduler, 0.0, served)
    assert [r for _kind, r in served] == [pinned, click]
