"""How responsive the window is: start-up, UI-thread stalls, map latency, alpha/colormap.

    python benchmarks/bench_window.py [--launches 5] [--maps 30] [--repeats 20] [--sessions 5]
    python benchmarks/bench_window.py --sessions-only [--sessions 5]

Runs the real window (``QT_QPA_PLATFORM=offscreen`` unless the caller chose a platform, e.g.
``xcb`` under Xvfb) with the demo model, and prints a Markdown table (median and worst):

- launch: a subprocess runs ``gradcam_desktop.__main__.main()`` (the code behind
  ``python -m gradcam_desktop``) and prints monotonic timestamps when the main window gets its
  first paint event and when it emits ``resultShown`` for the first time; both are measured from
  just before the subprocess is started, so interpreter start-up and imports count.
- stall: a 10 ms ``QTimer`` heartbeat on the UI thread records the longest gap between two
  ticks while the window computes maps: 3 layers never used before (each traces a
  ``tf.function``), then ``--maps`` layer/class changes back to back, driven through the layer
  tree and the class list (``select_path`` / ``select_class``, which emit the same signals as
  clicks), then until the worker's precompute of the top classes is done.
- class/layer change → map on screen: from the widget change to the first paint after the
  ``resultShown`` of the requested (layer, class). "Uncached" targets are checked against the
  worker's cache first and confirmed by ``resultShown``'s ``cached`` flag; the worker is left
  idle (its precompute finished) before each change. "New layer" is a layer never used before
  on this model: it includes tracing that layer's ``tf.function``.
- alpha / colormap: ``alphaSlider.setValue`` / ``colormapBox.setCurrentIndex`` → pixels
  recomposited (the call returns) → repainted (``processEvents`` delivers the paint; a paint of
  the image view's viewport is checked). Colormaps cycle through more than the view's 3-entry
  colour cache, so every change colourises the map again (the slow case).

- click session (issue 6 §5, ``bench_session.py``): 20 layer/class changes by real mouse clicks
  50–150 ms apart, the event loop running between them, two of the layers never used before;
  the longest gap of the 10 ms heartbeat per session, each session in a fresh process.

Everything runs on the sample picture that ``python -m gradcam_desktop`` opens and on a
4000×3000 version of it. Settings go to a temporary folder. Targets (issue 3): window ≤ 1 s,
stall ≤ 50 ms, alpha/colormap ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_SETTINGS = tempfile.mkdtemp(prefix="gradcam-bench-")
atexit.register(shutil.rmtree, _SETTINGS, ignore_errors=True)
if "QT_QPA_PLATFORM" not in os.environ:
    # Offscreen's default screen is 800×800, which squeezes the 1280×800 window: give it a
    # 1920×1080 one at 96 dpi, like a common desktop.
    _screen = os.path.join(_SETTINGS, "offscreen.json")
    Path(_screen).write_text('{"screens": [{"name": "bench", "x": 0, "y": 0, "width": 1920, "height": 1080, '
                             '"logicalDpi": 96, "logicalBaseDpi": 96, "dpr": 1}]}', encoding="utf-8")
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={_screen}"
for _key, _value in (("TF_CPP_MIN_LOG_LEVEL", "2"), ("GRADCAM_DESKTOP_NO_DIALOGS", "1")):
    os.environ.setdefault(_key, _value)
# QSettings and the log file go to a throw-away folder (same for the launched subprocesses).
os.environ["XDG_CONFIG_HOME"] = os.path.join(_SETTINGS, "config")
os.environ["XDG_DATA_HOME"] = os.path.join(_SETTINGS, "data")
sys.path.insert(0, str(REPO))

TARGETS = {"window": 1.0, "stall": 0.050, "instant": 0.050}

# The launched process: the real main(), with probes on MainWindow that print timestamps on a
# clock shared across processes (CLOCK_MONOTONIC), then close the window after the first map.
LAUNCHER = r"""
import sys, time
from gradcam_desktop import __main__ as entry
from gradcam_desktop.ui import main_window
from PySide6.QtCore import QEvent, QObject, QTimer

def mark(name):
    print(f"@{name} {time.monotonic():.6f}", flush=True)

class Probe(QObject):
    seen = set()
    def eventFilter(self, obj, event):
        kind = event.type()
        for wanted, name in ((QEvent.Type.Show, "show"), (QEvent.Type.Paint, "paint")):
            if kind == wanted and name not in self.seen:
                self.seen.add(name)
                mark(name)
        return False

original_init = main_window.MainWindow.__init__

def probed_init(self, *args, **kwargs):
    original_init(self, *args, **kwargs)
    self._bench_probe = Probe(self)
    self.installEventFilter(self._bench_probe)
    def first_map(_payload):
        mark("map")
        self.resultShown.disconnect(first_map)
        QTimer.singleShot(0, self.close)
    self.resultShown.connect(first_map)

main_window.MainWindow.__init__ = probed_init
code = entry.main([])
mark("exit")
sys.exit(code)
"""


# -- formatting ----------------------------------------------------------------------------------
def fmt(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms" if seconds >= 0.01 \
        else f"{seconds * 1000:.1f} ms"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, name: str, values: list[float], target: float | None = None) -> None:
        if not values:
            self.rows.append((name, "0", "–", "–", "no sample"))
            return
        median, worst = statistics.median(values), max(values)
        verdict = "" if target is None else f"≤ {fmt(target)}: " + ("yes" if worst <= target else
                                                                   "median only" if median <= target else "NO")
        self.rows.append((name, str(len(values)), fmt(median), fmt(worst), verdict))

    def print(self) -> None:
        head = ("measurement", "n", "median", "worst", "target met")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
        print(line(head))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in self.rows:
            print(line(row))


# -- (a) launch ----------------------------------------------------------------------------------
def measure_launch(runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"paint": [], "map": [], "imports": [], "tf": []}
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for _ in range(runs):
        # Baseline for the profile: interpreter + PySide6 widgets import alone.
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", "import PySide6.QtWidgets"], check=True, env=env)
        out["imports"].append(time.monotonic() - start)
        start = time.monotonic()  # what the worker waits for before the first map
        subprocess.run([sys.executable, "-c", "from gradcam_desktop.core.runtime import import_tensorflow_quietly; "
                        "import_tensorflow_quietly(); import keras"], check=True, env=env, capture_output=True)
        out["tf"].append(time.monotonic() - start)
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", LAUNCHER], capture_output=True, text=True, env=env,
                              cwd=_SETTINGS, timeout=300)
        marks = {}
        for text in proc.stdout.splitlines():
            if text.startswith("@"):
                name, stamp = text[1:].split()
                marks[name] = float(stamp) - start
        if proc.returncode != 0 or "paint" not in marks or "map" not in marks:
            raise SystemExit(f"launch failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}")
        out["paint"].append(marks["paint"])
        out["map"].append(marks["map"])
    return out


# -- in-process helpers --------------------------------------------------------------------------
class Bench:
    """Drives one MainWindow and times what the user would see."""

    def __init__(self) -> None:
        from PySide6.QtCore import QEvent, QObject, Qt, QTimer
        from PySide6.QtWidgets import QApplication

        from gradcam_desktop.ui import MainWindow
        from gradcam_desktop.ui.explore.image_view import ImageView

        self.app = QApplication.instance() or QApplication([sys.argv[0]])
        self.win = MainWindow()
        self.win.show()
        self._hit = None
        self._want = None
        self._loop = None
        self.win.resultShown.connect(self._on_result)
        self.view = self.widget(ImageView, "imageView")
        self.paints = 0
        bench = self

        class _Paints(QObject):
            def eventFilter(self, _obj, event):
                if event.type() == QEvent.Type.Paint:
                    bench.paints += 1
                return False

        self._paint_filter = _Paints()
        self.view.viewport().installEventFilter(self._paint_filter)
        # heartbeat
        self.ticks: list[float] = []
        self.heart = QTimer()
        self.heart.setTimerType(Qt.TimerType.PreciseTimer)
        self.heart.setInterval(10)
        self.heart.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    # -- waiting without sleeping on the UI thread
    def _on_result(self, payload) -> None:
        if self._want is not None and self._want(payload):
            self._hit = (time.perf_counter(), payload)
            self._want = None
            if self._loop is not None:
                self._loop.quit()

    def spin(self, seconds: float) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    def until_shown(self, action, want, timeout: float = 300.0) -> tuple[float, float, dict]:
        """Run ``action``; return (seconds to resultShown, seconds to painted, payload)."""
        from PySide6.QtCore import QEventLoop, QTimer

        self._hit, self._want = None, want
        self._loop = QEventLoop()
        guard = QTimer()
        guard.setSingleShot(True)
        guard.timeout.connect(self._loop.quit)
        guard.start(int(timeout * 1000))
        start = time.perf_counter()
        action()
        if self._hit is None:
            self._loop.exec()
        guard.stop()
        self._loop = None
        if self._hit is None:
            raise SystemExit(f"no matching resultShown within {timeout} s")
        shown, payload = self._hit
        before = self.paints
        self.app.processEvents()  # the paint the view scheduled in set_map
        painted = time.perf_counter()
        if self.paints == before:
            self.view.viewport().repaint()
            painted = time.perf_counter()
        return shown - start, painted - start, payload

    def settle(self, window: float = 0.5, limit: float = 30.0) -> None:
        """Wait until the worker is idle (its background jobs done): until the threads other than
        this one (the worker and TensorFlow's pools) use < 5 % of a core over ``window`` seconds.
        The window outlasts the jobs' idle delays (jobs.py), so a pause before a job is not idle."""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            before = time.process_time() - time.thread_time()
            self.spin(window)
            if time.process_time() - time.thread_time() - before < 0.05 * window:
                return

    # -- widgets, found by type and objectName: the window's attribute layout may change
    def widget(self, kind, name: str | None = None):
        found = self.win.findChild(kind, name) if name else self.win.findChild(kind)
        if found is None:
            raise SystemExit(f"the window has no {kind.__name__} {name or ''}")
        return found

    def layer_view(self):
        """The layer tree (a QTreeView whose model has ``index_for_path`` / ``eligible_paths``)."""
        from PySide6.QtWidgets import QTreeView

        return self.widget(QTreeView, "layerTree")

    def class_view(self):
        """The class list's QListView (UserRole on its indexes is the class index)."""
        from PySide6.QtWidgets import QListView

        return self.widget(QListView, "classList")

    def class_widget(self):
        from gradcam_desktop.ui.explore.class_list import ClassListWidget

        return self.widget(ClassListWidget)

    def chosen_class(self) -> int | None:
        """The class highlighted in the class list."""
        return self.class_widget().current_class()

    def cached(self, layer: str, class_index: int) -> bool:
        key = self.win.current_image().key
        return any(k[0] == key and k[2] == layer and k[3] == class_index for k in self.win.worker.cached_keys())

    def layers(self) -> list[str]:
        return self.layer_view().model().eligible_paths()

    def classes(self) -> int:
        return len(self.win.shown_result().probabilities)

    def current(self) -> tuple[str, int, str]:
        shown = self.win.shown_result()
        return shown.layer, shown.class_index, self.win.current_image().key

    # -- user actions
    def change_layer(self, layer: str):
        key = self.current()[2]
        return self.until_shown(lambda: self.layer_view().select_path(layer),
                                lambda d: d.layer == layer and d.image_key == key)

    def change_class(self, class_index: int):
        layer, _cls, key = self.current()
        return self.until_shown(lambda: self.class_widget().select_class(class_index),
                                lambda d: d.class_index == class_index and d.layer == layer
                                and d.image_key == key)

    def show_image(self, index: int):
        key = self.win.images()[index].key
        return self.until_shown(lambda: self.win.show_image(index), lambda d: d.image_key == key)

    # -- heartbeat
    def start_heartbeat(self) -> None:
        self.ticks = []
        self.heart.start()

    def stop_heartbeat(self) -> list[float]:
        self.heart.stop()
        return [b - a for a, b in zip(self.ticks, self.ticks[1:])]

    def close(self) -> None:
        self.win.close()
        import shiboken6

        shiboken6.delete(self.win)


def large_version(path: str, size=(3000, 4000)) -> tuple[str, bytes]:
    """The sample picture at 4000×3000, as PNG bytes (opened like a pasted or dropped file)."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    big = cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    ok, png = cv2.imencode(".png", big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return (f"large {size[1]}x{size[0]}.png", png.tobytes())


# -- (b) stall while computing -------------------------------------------------------------------
def stall_run(b: Bench, maps: int, new_layers: int = 0) -> tuple[list[float], list[float], int]:
    """Heartbeat gaps while ``maps`` layer/class changes are made back to back (each waits for its
    map), then while the worker precomputes; ``new_layers`` layers never used before go first
    (each traces a tf.function on the worker), with the worker left idle before each."""
    layers, classes = b.layers(), b.classes()
    per_map, uncached = [], 0
    b.start_heartbeat()
    for layer in layers[-1 - new_layers:-1][::-1]:
        b.settle()
        _shown, painted, payload = b.change_layer(layer)
        per_map.append(painted)
        uncached += not payload.cached
    layer_i, cls = 0, 0
    for step in range(maps):
        if step % 3 == 0:  # one layer change, then two class changes
            layer_i = (layer_i + 1) % len(layers)
            _shown, painted, payload = b.change_layer(layers[-1 - layer_i])
        else:
            cls = (b.current()[1] + 1) % classes
            _shown, painted, payload = b.change_class(cls)
        per_map.append(painted)
        uncached += not payload.cached
    b.settle()
    gaps = b.stop_heartbeat()
    return gaps, per_map, uncached


def set_map_cost(b: Bench, repeats: int = 7) -> list[float]:
    """The image view's own work for a new map (recomposite at the image's size), worker idle."""
    b.settle()
    display = b.win.shown_result().display
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        b.view.set_map(display)
        b.app.processEvents()
        times.append(time.perf_counter() - start)
    return times


# -- (c) change → map, settled -------------------------------------------------------------------
def change_latencies(b: Bench, image_indices: list[int], out: dict[str, list[float]]) -> None:
    """For each image: uncached + cached class changes and layer changes, worker idle before each."""
    layers, classes = b.layers(), b.classes()
    for index in image_indices:
        b.show_image(index)
        for layer in layers[-3:][::-1]:
            b.settle()
            layer_now, cls, _key = b.current()
            if layer != layer_now and not b.cached(layer, cls):
                _s, painted, payload = b.change_layer(layer)
                out["layer uncached" if not payload.cached else "layer cached"].append(painted)
            b.settle()
            todo = [c for c in range(classes) if not b.cached(b.current()[0], c)]
            if todo:
                _s, painted, payload = b.change_class(todo[0])
                out["class uncached" if not payload.cached else "class cached"].append(painted)
            b.settle()
            layer_now, cls, _key = b.current()
            done = [c for c in range(classes) if c != cls and b.cached(layer_now, c)]
            if done:
                _s, painted, payload = b.change_class(done[0])
                out["class cached" if payload.cached else "class uncached"].append(painted)
        # Back to a layer visited with this class: cached.
        b.settle()
        layer_now, cls, _key = b.current()
        back = [p for p in layers if p != layer_now and b.cached(p, cls)]
        if back:
            _s, painted, payload = b.change_layer(back[0])
            out["layer cached" if payload.cached else "layer uncached"].append(painted)


# -- (d) alpha and colormap ----------------------------------------------------------------------
def instant_latencies(b: Bench, repeats: int) -> dict[str, list[float]]:
    from gradcam_desktop.core.overlay import COLORMAPS

    out: dict[str, list[float]] = {"alpha set": [], "alpha painted": [], "colormap set": [], "colormap painted": []}
    from PySide6.QtWidgets import QComboBox, QSlider

    slider, box = b.widget(QSlider, "alphaSlider"), b.widget(QComboBox, "colormapBox")
    b.app.processEvents()
    for i in range(repeats):
        value = 30 + (i * 37) % 60  # never the current value
        before = b.paints
        start = time.perf_counter()
        slider.setValue(value)
        composed = time.perf_counter()
        b.app.processEvents()
        painted = time.perf_counter()
        assert b.paints > before, "alpha change did not repaint the image view"
        out["alpha set"].append(composed - start)
        out["alpha painted"].append(painted - start)
    names = list(COLORMAPS)
    for i in range(repeats):
        target = names[(box.currentIndex() + 1 + i % 3) % len(names)]  # walks past the 3-entry cache
        before = b.paints
        start = time.perf_counter()
        box.setCurrentIndex(names.index(target))
        composed = time.perf_counter()
        b.app.processEvents()
        painted = time.perf_counter()
        assert b.paints > before, "colormap change did not repaint the image view"
        out["colormap set"].append(composed - start)
        out["colormap painted"].append(painted - start)
    slider.setValue(50)
    box.setCurrentIndex(names.index("jet"))
    b.app.processEvents()
    return out


# -- (e) click session ---------------------------------------------------------------------------
def click_sessions(table: Table, runs: int) -> None:
    """Issue 6 §5's session, ``runs`` times (bench_session.py; ``--trace`` there attributes gaps)."""
    if runs <= 0:
        return
    import bench_session

    results = bench_session.run_sessions(runs, echo=lambda text: print(text, flush=True))
    print(bench_session.summary(results), flush=True)
    table.add("(e) click session: worst UI gap per session (20 clicks, 2 new layers)",
              [r["worst"] for r in results], TARGETS["stall"])
    table.add("    last click → its map shown", [r["last_click_to_map"] for r in results])


# -- main ----------------------------------------------------------------------------------------
def versions() -> str:
    def v(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "?"

    from PySide6 import __version__ as pyside
    from PySide6.QtCore import qVersion

    return (f"Python {platform.python_version()}, PySide6 {pyside} (Qt {qVersion()}), "
            f"TensorFlow {v('tensorflow')}, Keras {v('keras')}, NumPy {v('numpy')}, "
            f"OpenCV {v('opencv-python-headless') if v('opencv-python-headless') != '?' else v('opencv-python')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=5, help="launches of the app (a)")
    parser.add_argument("--maps", type=int, default=30, help="maps computed under the heartbeat (b)")
    parser.add_argument("--repeats", type=int, default=20, help="alpha and colormap changes (d)")
    parser.add_argument("--no-large", action="store_true", help="skip the 4000×3000 picture")
    parser.add_argument("--sessions", type=int, default=5, help="click sessions (e); 0 skips them")
    parser.add_argument("--sessions-only", action="store_true", help="run only the click sessions")
    args = parser.parse_args()

    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{cores} cores ({usable} usable)")
    print(f"versions: {versions()}")
    print("load average before: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    qpa = os.environ["QT_QPA_PLATFORM"]
    print(f"Qt platform: {'offscreen (1920×1080 screen, 96 dpi)' if qpa.startswith('offscreen:configfile=') else qpa}",
          flush=True)
    table = Table()
    if args.sessions_only:
        click_sessions(table, args.sessions)
        table.print()
        return

    launch = measure_launch(args.launches)
    table.add("(a) launch → window painted", launch["paint"], TARGETS["window"])
    table.add("(a) launch → first map shown", launch["map"])
    table.add("    baseline: python -c 'import PySide6.QtWidgets'", launch["imports"])
    table.add("    baseline: python -c 'import tensorflow, keras'", launch["tf"])
    print(f"launches done ({args.launches})", flush=True)

    from gradcam_desktop.__main__ import sample_image

    sample = sample_image()
    b = Bench()
    samples = sorted(str(p) for p in (REPO / "images").glob("*.png")
                     if "screenshot" not in p.name and "readme" not in p.name)
    if sample in samples:
        samples.remove(sample)
    b.until_shown(lambda: (b.win.open_model("demo"), b.win.open_images([sample, *samples])), lambda d: True)
    import cv2

    h, w = cv2.imread(sample).shape[:2]
    size = f"{w}×{h}"
    print(f"window {b.win.width()}×{b.win.height()}, image view {b.view.viewport().width()}×"
          f"{b.view.viewport().height()}; demo model ({len(b.layers())} eligible layers, {b.classes()} classes); "
          f"sample {Path(sample).name} ({size}) + {len(samples)} more", flush=True)

    gaps, first_maps, uncached = stall_run(b, args.maps, new_layers=3)
    table.add(f"(b) UI heartbeat worst gap, {len(first_maps)} maps ({uncached} uncached, 3 new layers), {size}",
              [max(gaps)], TARGETS["stall"] + 0.010)
    table.add(f"    heartbeat gaps ({sum(gaps):.1f} s of work)", gaps)
    table.add("    image view's own work for a new map (worker idle)", set_map_cost(b))
    print("stall done", flush=True)

    lat: dict[str, list[float]] = {k: [] for k in ("class uncached", "class cached", "layer uncached", "layer cached")}
    change_latencies(b, list(range(1, len(b.win.images()))) + [0], lat)
    table.add(f"(c) class change → map painted, uncached, {size}", lat["class uncached"])
    table.add(f"(c) class change → map painted, cached, {size}", lat["class cached"])
    table.add(f"(c) layer change → map painted, uncached, {size}", lat["layer uncached"])
    table.add(f"(c) layer change → map painted, cached, {size}", lat["layer cached"])
    table.add("(c) layer change → map painted, layer never used (traces it)", first_maps[:3])
    b.show_image(0)
    b.settle()
    inst = instant_latencies(b, args.repeats)
    table.add(f"(d) alpha → pixels updated, {size}", inst["alpha set"])
    table.add(f"(d) alpha → repainted, {size}", inst["alpha painted"], TARGETS["instant"])
    table.add(f"(d) colormap → pixels updated, {size}", inst["colormap set"])
    table.add(f"(d) colormap → repainted, {size}", inst["colormap painted"], TARGETS["instant"])
    print("sample done", flush=True)

    if not args.no_large:
        big = large_version(sample)
        b.settle()
        b.until_shown(lambda: b.win.open_images([big]), lambda d: d.image == big[0], timeout=600)
        large = "4000×3000"
        b.settle()
        gaps, per_map, uncached = stall_run(b, max(6, args.maps // 3))
        table.add(f"(b) UI heartbeat worst gap, {len(per_map)} maps ({uncached} uncached), {large}", [max(gaps)],
                  TARGETS["stall"] + 0.010)
        table.add(f"    heartbeat gaps ({sum(gaps):.1f} s of work)", gaps)
        table.add("    image view's own work for a new map (worker idle)", set_map_cost(b))
        lat = {k: [] for k in lat}
        change_latencies(b, [len(b.win.images()) - 1], lat)
        b.settle()
        table.add(f"(c) class change → map painted, uncached, {large}", lat["class uncached"])
        table.add(f"(c) class change → map painted, cached, {large}", lat["class cached"])
        table.add(f"(c) layer change → map painted, uncached, {large}", lat["layer uncached"])
        table.add(f"(c) layer change → map painted, cached, {large}", lat["layer cached"])
        inst = instant_latencies(b, args.repeats)
        table.add(f"(d) alpha → pixels updated, {large}", inst["alpha set"])
        table.add(f"(d) alpha → repainted, {large}", inst["alpha painted"], TARGETS["instant"])
        table.add(f"(d) colormap → pixels updated, {large}", inst["colormap set"])
        table.add(f"(d) colormap → repainted, {large}", inst["colormap painted"], TARGETS["instant"])
    b.close()
    click_sessions(table, args.sessions)
    print("load average after: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print()
    table.print()
    print("\nThe heartbeat target is the 50 ms stall on top of the 10 ms period (worst gap ≤ 60 ms).")


if __name__ == "__main__":
    main()
