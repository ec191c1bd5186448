"""The click session of issue 6 §5: quick layer/class changes made with real mouse clicks.

    python benchmarks/bench_session.py [--runs 5] [--clicks 20] [--trace] [--ui-realtime]

(``bench_window.py`` runs the same sessions with ``--sessions N``.) Each run is a fresh process:
TensorFlow's and AutoGraph's per-process caches would make a second session in one process
cheaper than what a user sees. The window opens the demo model and the sample picture and the
worker is left idle (its background jobs done); then ``--clicks`` changes are made by
``QTest.mouseClick`` at the centre of the row's ``visualRect`` in the layer tree's / class
list's viewport, 50–150 ms apart (seeded per run), with the event loop running in between.
Every third click picks a layer: two layers never used before (each traces a
``tf.function`` unless something prepared it), the default layer and those two again; the
other clicks go round the classes other than the highlighted one. A 10 ms ``QTimer`` on the UI
thread records the longest gap between ticks from the first click until the worker is idle
again after the last one.

``--trace`` runs the engine on a thread of the window's process (``GRADCAM_DESKTOP_ENGINE=thread``,
as before issue 17: the probes cannot reach another process) and logs timestamped spans on both
threads (engine: map, trace, capture, display; window: click, on_map, set_classes, set_map, busy)
and the UI thread's scheduler statistics at every tick (/proc/thread-self/schedstat), and prints,
for every gap > 20 ms, how long the UI thread ran, waited for a CPU (runnable, not running) and was
blocked (not runnable: waiting for the interpreter lock, or idle until the timer was due), how often
it went to sleep, and what ran on each thread meanwhile. ``--ui-realtime`` runs the UI thread under
SCHED_RR during the session (needs CAP_SYS_NICE): a control that removes waiting for a CPU behind
other processes, to tell the app's own stalls from a busy machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GAP_REPORTED = 0.020


# -- spans on both threads (--trace) -------------------------------------------------------------
class Spans:
    """Timestamped (start, end, thread, label) spans; list.append is atomic under the GIL."""

    def __init__(self) -> None:
        self.items: list[tuple[float, float, str, str]] = []
        self.ui = threading.get_ident()

    def add(self, start: float, end: float, label: str) -> None:
        self.items.append((start, end, "ui" if threading.get_ident() == self.ui else "worker", label))

    def wrap(self, owner, name: str, label: str | None = None, describe=None) -> None:
        """Replace ``owner.name`` by a probe that records a span around each call (if it exists)."""
        original = getattr(owner, name, None)
        if original is None:
            return
        spans = self

        def probed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                extra = f" {describe(*args, **kwargs)}" if describe else ""
                spans.add(start, time.perf_counter(), (label or name) + extra)

        setattr(owner, name, probed)


def install_probes(spans: Spans) -> None:
    """Wrap the steps of a map on both threads; before the window exists, so that the signal
    connections it makes bind the probes."""
    from gradcam_desktop.core import capture, gradcam
    from gradcam_desktop.session import engine, maps
    from gradcam_desktop.ui import main_window
    from gradcam_desktop.ui.explore import class_list
    from gradcam_desktop.ui.explore import image_view

    spans.wrap(capture.Capture, "_capture", "trace python", lambda self, *_a: self.layer)
    spans.wrap(capture.Capture, "run", "capture.run", lambda self, *_a: self.layer)
    spans.wrap(capture.Capture, "prepare", "prepare", lambda self, *_a: self.layer)
    spans.wrap(gradcam.GradCam, "explain", "explain", lambda self, _img, layer=None, cls=None, *a, **k: f"{layer}/{cls}")
    for name in ("_explain", "_step"):
        spans.wrap(engine.Engine, name)
    spans.wrap(maps.MapMaker, "precompute")
    spans.wrap(maps, "display_uint8")
    for name in ("_on_map", "_on_layer", "keep_class", "_on_busy"):
        spans.wrap(main_window.MainWindow, name)
    spans.wrap(class_list.ClassListWidget, "set_classes")
    spans.wrap(image_view.ImageView, "set_map")


def schedstat() -> tuple[int, int, int]:
    """(ns on a CPU, ns waiting for a CPU, times scheduled in) of the calling thread."""
    with open("/proc/thread-self/schedstat", encoding="ascii") as f:
        run, wait, slices = f.read().split()
    return int(run), int(wait), int(slices)


# -- one session (in a child process) ------------------------------------------------------------
def plan(clicks: int, default: str, new: list[str], rng: random.Random) -> list[tuple[str, str | None, float]]:
    """(kind, layer or None, pause before) per click: two class clicks, then a layer click; the
    layer clicks visit a new layer, the default, the first new one again, the second new one, …"""
    layer_order = [new[0], default, new[0], new[1], default, new[1]]
    steps = []
    for i in range(clicks):
        pause = rng.uniform(0.05, 0.15)
        steps.append(("layer", layer_order[(i // 3) % len(layer_order)], pause) if i % 3 == 2
                     else ("class", None, pause))
    return steps


def click_row(view, index) -> None:
    """A real left click at the centre of ``index``'s row in ``view``'s viewport."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    view.scrollTo(index)
    rect = view.visualRect(index)
    if not rect.isValid() or not view.viewport().rect().contains(rect.center()):
        raise SystemExit(f"row {index.row()} is not visible in {view.objectName()}")
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, rect.center())


def run_child(clicks: int, seed: int, trace: bool, realtime: bool) -> dict:
    sys.path.insert(0, str(HERE))
    import bench_window  # sets the environment (offscreen screen, settings folder) on import
    from PySide6.QtCore import Qt

    spans = Spans() if trace else None
    if spans is not None:
        os.environ["GRADCAM_DESKTOP_ENGINE"] = "thread"  # the probes see the engine's thread only in this process
        install_probes(spans)
    from gradcam_desktop.__main__ import sample_image

    b = bench_window.Bench()
    b.until_shown(lambda: (b.win.open_model("demo"), b.win.open_images([sample_image()])), lambda d: True)
    b.settle()
    tree, classes = b.layer_view(), b.class_view()
    layers, default = b.layers(), b.current()[0]
    new = [p for p in (layers[-2], layers[-4], layers[-3], layers[-5]) if p != default][:2]
    assert not any(b.cached(p, c) for p in new for c in range(b.classes())), "the new layers were used already"
    steps = plan(clicks, default, new, random.Random(seed))
    shown: list[tuple[float, str, int]] = []
    b.win.resultShown.connect(lambda r: shown.append((time.perf_counter(), r.layer, r.class_index)))
    stats: list[tuple[int, int, int]] = []
    if trace:
        b.heart.timeout.connect(lambda: stats.append(schedstat()))
    if realtime:
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_RR, os.sched_param(1))
    b.start_heartbeat()
    stats.append(schedstat())
    start = time.perf_counter()
    layer, cls = default, b.current()[1]
    for step, (kind, target, pause) in enumerate(steps):
        b.spin(pause)
        clicked = time.perf_counter()
        if kind == "layer":
            layer = target
            click_row(tree, tree.model().index_for_path(target))
        else:
            proxy = classes.model()
            chosen = b.chosen_class()
            others = [i for i in (proxy.index(r, 0) for r in range(proxy.rowCount()))
                      if i.data(Qt.ItemDataRole.UserRole) != chosen]
            index = others[step % len(others)]
            cls = index.data(Qt.ItemDataRole.UserRole)
            click_row(classes, index)
        if spans is not None:
            spans.add(clicked, time.perf_counter(), f"click {kind} {target if kind == 'layer' else cls}")
    b.settle()
    ticks = list(b.ticks)
    gaps = b.stop_heartbeat()
    if b.current()[:2] != (layer, cls):
        raise SystemExit(f"the window shows {b.current()[:2]}, the clicks asked for {(layer, cls)}")
    last_map = next((t for t, *what in shown if t > clicked and tuple(what) == (layer, cls)), float("nan"))
    out = {"worst": max(gaps), "ticks": len(gaps), "over_20ms": sum(g > GAP_REPORTED for g in gaps),
           "last_click_to_map": last_map - clicked, "new_layers": new, "default": default,
           "load": os.getloadavg()[0]}
    if spans is not None:
        out["gaps"] = explain_gaps(ticks, stats, spans.items, start)
    b.close()
    return out


def explain_gaps(ticks: list[float], stats: list[tuple[int, int, int]], spans, origin: float) -> list[dict]:
    """Every gap > 20 ms: the UI thread's time running / waiting for a CPU / blocked, how often it
    went to sleep, and the spans of both threads that overlap it (ms from the gap's start)."""
    found = []
    # stats[0] was read at the start, stats[i + 1] at tick i (its probe is connected first).
    for i in range(1, min(len(ticks), len(stats) - 1)):
        a, b = ticks[i - 1], ticks[i]
        if b - a <= GAP_REPORTED:
            continue
        ran = (stats[i + 1][0] - stats[i][0]) / 1e9
        wait = (stats[i + 1][1] - stats[i][1]) / 1e9
        found.append({"at": a - origin, "gap": b - a, "ran": ran, "cpu_wait": wait,
                      "blocked": max(0.0, b - a - ran - wait), "sleeps": stats[i + 1][2] - stats[i][2],
                      "spans": [f"{thread}:{label}[{(max(s, a) - a) * 1000:.0f}–{(min(e, b) - a) * 1000:.0f}]"
                                for s, e, thread, label in spans if s < b and e > a]})
    return found


def gap_line(g: dict) -> str:
    return (f"t={g['at'] * 1000:6.0f} gap {g['gap'] * 1000:3.0f} ms: UI ran {g['ran'] * 1000:.0f}, waited for a CPU "
            f"{g['cpu_wait'] * 1000:.0f}, blocked {g['blocked'] * 1000:.0f} ({g['sleeps']} sleeps) | "
            + "; ".join(g["spans"]))


# -- several runs --------------------------------------------------------------------------------
def run_sessions(runs: int, clicks: int = 20, trace: bool = False, realtime: bool = False, echo=print) -> list[dict]:
    """``runs`` sessions, each in a fresh process; returns their results (times in seconds)."""
    results = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])))
    for seed in range(runs):
        proc = subprocess.run([sys.executable, str(Path(__file__)), "--child", "--clicks", str(clicks),
                               "--seed", str(seed), *(["--trace"] if trace else []),
                               *(["--ui-realtime"] if realtime else [])],
                              capture_output=True, text=True, env=env, timeout=900)
        line = next((text for text in proc.stdout.splitlines()[::-1] if text.startswith("{")), None)
        if proc.returncode != 0 or line is None:
            raise SystemExit(f"session failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        result = json.loads(line)
        results.append(result)
        echo(f"session {seed + 1}/{runs}: worst UI gap {result['worst'] * 1000:.0f} ms ({result['over_20ms']} gaps "
             f"> 20 ms of {result['ticks']}), last click → its map {result['last_click_to_map'] * 1000:.0f} ms, "
             f"load {result['load']:.1f}; new layers {', '.join(result['new_layers'])}")
        gaps = result.get("gaps", [])
        if gaps:
            total = {k: sum(g[k] for g in gaps) * 1000 for k in ("ran", "cpu_wait", "blocked")}
            echo(f"    in the {len(gaps)} gaps > 20 ms the UI thread ran {total['ran']:.0f} ms, waited for a CPU "
                 f"{total['cpu_wait']:.0f} ms, was blocked {total['blocked']:.0f} ms")
            for g in gaps:
                echo("    " + gap_line(g))
    return results


def summary(results: list[dict]) -> str:
    worst = [r["worst"] * 1000 for r in results]
    return (f"worst UI gap over {len(worst)} sessions: min {min(worst):.0f} ms, median "
            f"{statistics.median(worst):.0f} ms, max {max(worst):.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--trace", action="store_true", help="attribute every gap > 20 ms")
    parser.add_argument("--ui-realtime", action="store_true", help="UI thread under SCHED_RR (a control)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.clicks, args.seed, args.trace, args.ui_realtime)), flush=True)
        return
    print("load average before: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    results = run_sessions(args.runs, args.clicks, args.trace, args.ui_realtime, echo=lambda s: print(s, flush=True))
    print("load average after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(summary(results))


if __name__ == "__main__":
    main()
