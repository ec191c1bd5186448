"""Issue 17: what the engine's own process costs — per map on ResNet50, and the UI thread's worst gap.

    python benchmarks/bench_boundary.py [--maps 40] [--side 1000] [--layers 6]

Runs the window's ``GradCamWorker`` (no window) with the engine in its own process and, for the
before/after, on a thread of the window's process (``in_process=True``: the engine as it was
before issue 17). The model is a Keras ResNet50 with random weights (no download), saved to a
temporary ``.keras`` file; the picture is a ``--side``² photo-like JPEG, so each map carries a
``--side``² uint8 display map (1 MB at 1000²) back to the window.

- cached map round trip: the same map asked ``--maps`` times (the engine answers from its
  cache): request → ``mapReady`` on the UI thread. This is the boundary alone: pickling, the
  shared-memory file, the pipe and the queued signal. The per-map cost of the process is the
  difference of the medians, process − thread.
- new map round trip: a different class each time (a compiled forward + backward + the map).
- transport only: ``transport.send`` + ``receive`` of one such ``MapResult`` over a pipe in one
  process (no engine).
- UI gap: a 1 ms ``QTimer`` on the UI thread records the longest gap between two ticks while the
  engine traces ``--layers`` layers never used before, asked back to back (each a new
  ``tf.function``: the heaviest Python work the engine does). Before issue 17 the engine shared
  the window's interpreter lock; in its own process it cannot hold the window's.

Not a test: prints a Markdown table with the CPU it ran on. The README's "Speed" section quotes it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from multiprocessing import Pipe
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_files(folder: Path, side: int) -> tuple[Path, Path, list[str]]:
    """ResNet50 (random weights) as .keras, a photo-like JPEG, and the layers to trace (in a subprocess:
    the window's process must not import TensorFlow)."""
    import subprocess

    code = f"""
import numpy as np, keras, cv2
from gradcam_desktop.core.layers import eligible_paths
model = keras.applications.ResNet50(weights=None)
model.save({str(folder / "resnet50.keras")!r})
rng = np.random.default_rng(0)
small = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
picture = cv2.resize(small, ({side}, {side}), interpolation=cv2.INTER_CUBIC)
picture = np.clip(picture + rng.normal(0, 6, picture.shape), 0, 255).astype(np.uint8)
cv2.imwrite({str(folder / "photo.jpg")!r}, picture)
print("\\n".join(eligible_paths(model)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return folder / "resnet50.keras", folder / "photo.jpg", out.stdout.split()


def run(in_process: bool, model: Path, picture: Path, layers: list[str], maps: int, new_layers: int) -> dict:
    from PySide6.QtCore import QElapsedTimer, QTimer
    from PySide6.QtWidgets import QApplication

    from gradcam_desktop.ui.worker import GradCamWorker

    app = QApplication.instance() or QApplication([])
    worker = GradCamWorker(in_process=in_process, precompute=False)
    got: dict[int, float] = {}
    info: list = []
    items: list = []
    worker.mapReady.connect(lambda request, _r: got.__setitem__(request, time.perf_counter()))
    worker.modelLoaded.connect(lambda _i, d: info.append(d))
    worker.imagesLoaded.connect(lambda _i, found: items.extend(found))

    def spin(condition, limit=600.0):
        end = time.monotonic() + limit
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("no answer")
            app.processEvents()
            time.sleep(0.0002)

    start = time.perf_counter()
    worker.start()
    worker.load_model(str(model))
    worker.load_images([str(picture)])
    spin(lambda: info and items)
    key, default = items[0].key, info[0].default_layer

    def ask(layer, class_index):
        sent = time.perf_counter()
        request = worker.explain(key, layer, class_index)
        spin(lambda: request in got)
        return got[request] - sent

    ask(default, 0)
    print(f"  ready after {time.perf_counter() - start:.1f} s", file=sys.stderr)
    cached = [ask(default, 0) for _ in range(maps)]
    new = [ask(default, 1 + i) for i in range(maps)]

    # The UI thread's longest gap while the engine traces layers never used before.
    timer, clock, gaps = QTimer(), QElapsedTimer(), []
    last = [0]
    timer.setInterval(1)

    def tick():
        now = clock.nsecsElapsed()
        gaps.append(now - last[0])
        last[0] = now

    timer.timeout.connect(tick)
    fresh = [layer for layer in layers if layer != default][-new_layers:]
    clock.start()
    timer.start()
    traced = []
    for layer in fresh:
        gaps.clear()
        last[0] = clock.nsecsElapsed()
        traced.append(ask(layer, 0))
        traced[-1] = (traced[-1], max(gaps, default=0) / 1e6)
    timer.stop()
    worker.stop()
    worker.wait(60_000)
    return {"cached": cached, "new": new, "trace": traced}


def transport_only(picture_side: int, repeats: int) -> list[float]:
    import numpy as np

    from gradcam_desktop.core.types import MapResult, Prediction
    from gradcam_desktop.session import transport

    probabilities = np.full(1000, 1e-3)
    result = MapResult(raw=np.random.default_rng(0).random((7, 7), dtype=np.float32), layer="conv5_block3_out",
                       class_index=0, class_name="tench", score=1e-3,
                       prediction=Prediction(probabilities, [(i, str(i), 1e-3) for i in range(5)], "softmax"),
                       display=np.zeros((picture_side, picture_side), np.uint8))
    ours, theirs = Pipe()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        transport.send(ours, ("mapReady", (1, result)))
        transport.receive(theirs)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=40)
    parser.add_argument("--side", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=6)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="gradcam-boundary-"))
    model, picture, layers = make_files(folder, args.side)
    rows = {}
    for name, in_process in (("thread (before)", True), ("process", False)):
        print(f"engine on a {name}…", file=sys.stderr)
        rows[name] = run(in_process, model, picture, layers, args.maps, args.layers)
    wire = transport_only(args.side, 200)

    def ms(values):
        return f"{statistics.median(values) * 1e3:.2f} ms (worst {max(values) * 1e3:.2f})"

    print(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores; ResNet50, one {args.side}² picture\n")
    print("| engine | cached map round trip | new map round trip | new layer: map | new layer: worst UI gap |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        maps_ = [t for t, _g in row["trace"]]
        gaps = [g for _t, g in row["trace"]]
        print(f"| {name} | {ms(row['cached'])} | {ms(row['new'])} | {statistics.median(maps_):.2f} s | "
              f"{statistics.median(gaps):.1f} ms median, {max(gaps):.1f} ms worst |")
    boundary = statistics.median(rows["process"]["cached"]) - statistics.median(rows["thread (before)"]["cached"])
    print(f"\nper-map cost of the process boundary (cached, process − thread): {boundary * 1e3:.2f} ms")
    print(f"transport only (send + receive of the MapResult, one process): {ms(wire)}")


if __name__ == "__main__":
    main()
