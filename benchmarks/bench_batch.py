"""Issue 21: where ``gradcam batch``'s time per picture goes, and the whole loop against the batch-16 floor.

    python benchmarks/bench_batch.py [--images 81] [--repeats 3] [--model resnet50|demo] [--noise]

The loop is ``core.batch.explain_batch`` as ``gradcam batch --method gradcam --heatmaps`` runs it
(overlay PNG + sidecar JSON + raw .npy per picture, atomic writes) over ``--images`` 640×480 JPEGs
(81 by default: five groups of 16 and one picture left over, as in the issue). The pictures are
photo-like (smooth colour fields, fine grain; ``--noise``: pure noise, the worst case for PNG and
JPEG coding).

Each run times the loop's stages where they run, on every thread, by wrapping the functions the
loop calls (perf_counter around each call; the wrappers cost microseconds):

    decode   images.load_image (read, decode, EXIF, RGB)              decoding threads
    capture  GradCam.explain_many / explain (model input, compiled     the loop's thread
             forward + backward, the reduction, the result)
    draw     overlay.display_map / blend (the overlay picture)           writing threads
    write    files.png_bytes / npy_bytes / atomic_write_all             writing threads
             (encode, then temporary files, fsync, rename)

Stages on other threads overlap the capture, so they add up to more than the loop; what they
cost the loop is the CPU they take from TensorFlow's two threads on two cores (the process CPU
time is printed beside the wall time). Two loops are timed, in turns with the floor:

    warm   an engine that has run the same loop before (every batch size it uses is traced)
    fresh  a new engine, as a new ``gradcam batch`` process has it, whose capture has been traced
           at the loop's group size just before (the one trace any run pays, not timed). A loop
           that traces a second batch size (e.g. for a short last group) pays for it here.

What-ifs (not what the app does): ``--png-compression N`` writes the overlay PNG at zlib level N
(0: stored, twice the bytes); ``--no-fsync`` skips flushing files to the disk. ``--ab`` times, in
turns on one warm engine (so that the machine's drift slows all of them alike), the loop as it
is, groups of 16 as before issue 21 (the last picture at batch 1, already traced), overlays
stored uncompressed, and no files at all (the capture, decoding and drawing only).

The floor is bench_methods.py's: a compiled (tf.function) forward + backward pass of 16 model
inputs to ``conv5_block3_out`` of a flat Keras ResNet50, per picture. Not a test; the README's
Speed section quotes this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_methods import build, compiled_floors  # noqa: E402  (imports TensorFlow quietly)

import tensorflow as tf  # noqa: E402

from gradcam_desktop.core import batch as batch_module  # noqa: E402
from gradcam_desktop.core import files, overlay  # noqa: E402
from gradcam_desktop.core.batch import GROUP, OutputStyle, explain_batch  # noqa: E402
from gradcam_desktop.core.gradcam import GradCam  # noqa: E402
from gradcam_desktop.core.images import load_image  # noqa: E402
from gradcam_desktop.core.models import load_model  # noqa: E402

STAGES = {"decode": [(batch_module, "load_image")],
          "draw": [(overlay, "display_map"), (overlay, "blend")],
          "write": [(files, "png_bytes"), (files, "npy_bytes"), (files, "atomic_write_all")]}


def cpu_name() -> str:
    """The CPU's model name, its vector extensions and the cores this process may use."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {vector}, {cores} cores"


class Stages:
    """Seconds spent inside each stage's functions, on any thread, while ``on`` is set."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()
        self.on = False

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            if not self.on:
                return function(*args, **kwargs)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[stage] += time.perf_counter() - start
        return timed

    def install(self) -> None:
        for stage, places in STAGES.items():
            for module, name in places:
                if hasattr(module, name):
                    setattr(module, name, self.wrap(stage, getattr(module, name)))
        for name in ("explain_many", "explain"):
            setattr(GradCam, name, self.wrap("capture", getattr(GradCam, name)))


def pictures(work: Path, count: int, noise: bool) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        if noise:
            pixels = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        else:  # a photo's statistics, roughly: smooth fields of colour and a little grain
            coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            smooth = np.asarray(Image.fromarray(coarse).resize((640, 480), Image.Resampling.BICUBIC), np.int16)
            pixels = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
        path = work / f"img{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["resnet50", "demo"], default="resnet50")
    parser.add_argument("--images", type=int, default=81)
    parser.add_argument("--repeats", type=int, default=3, help="timed loops of each kind (median)")
    parser.add_argument("--noise", action="store_true", help="pictures of pure noise instead of photo-like ones")
    parser.add_argument("--png-compression", type=int, default=None, help="what-if: overlay PNGs at this zlib level")
    parser.add_argument("--no-fsync", action="store_true", help="what-if: files not flushed to the disk (os.fsync "
                        "a no-op; NOT what the app does)")
    parser.add_argument("--ab", action="store_true", help="A/B of the loop's variants on one warm engine, in turns")
    args = parser.parse_args()
    if args.no_fsync:
        os.fsync = lambda fd: None
    if args.png_compression is not None:
        import cv2

        level = args.png_compression

        def png_bytes(path, rgb):
            extra = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE] if level == 0 else []
            bgr = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)
            return cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, level, *extra])[1].tobytes()
        files.png_bytes = png_bytes

    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-batch-"))
    flat, layer, spec = build(args.model, work)
    paths = pictures(work, args.images, args.noise)
    loaded = load_model(spec)
    style = OutputStyle(heatmaps=True, sidecar_extra={"model_name": loaded.display_name,
                                                      "model_sha256": loaded.sha256})
    images = [load_image(p) for p in paths[:GROUP]]
    warm = GradCam(loaded)  # as `gradcam batch` makes it
    inputs = np.concatenate([warm.model_input(image) for image in images])
    floor16 = compiled_floors(flat, layer, inputs)["fb16"]

    # The loop's group size (before issue 21: always GROUP) and a picture list of that many.
    size = getattr(batch_module, "balanced_size", lambda count, most: most)(len(paths), GROUP)
    group = (images * size)[:size]

    def fresh() -> GradCam:
        engine = GradCam(loaded)
        start = time.perf_counter()
        engine.explain_many(group, layer)
        traces.append(time.perf_counter() - start)
        return engine

    traces: list[float] = []

    stages = Stages()
    stages.install()
    runs = 0

    def loop(engine: GradCam) -> dict:
        nonlocal runs
        runs += 1
        out = work / f"out{runs}"
        out.mkdir()
        stages.seconds.clear()
        stages.on = True
        traced = sum(engine.trace_counts.values())
        cpu, start = os.times(), time.perf_counter()
        rows = list(explain_batch(engine, paths, out, layer=layer, method="gradcam", style=style))
        wall, after = time.perf_counter() - start, os.times()
        stages.on = False
        bad = [row.error for row in rows if row.error]
        assert not bad and len(rows) == len(paths), bad
        return {"wall": wall, "cpu": (after.user - cpu.user) + (after.system - cpu.system),
                "traces": sum(engine.trace_counts.values()) - traced, **stages.seconds}

    loop(warm)  # every batch size the loop uses is traced from now on
    if args.ab:
        ab(args, warm, paths, work, layer, style, floor16)
        return
    floors, warms, freshes = [], [], []
    for _ in range(args.repeats):
        for _ in range(3):
            floor16()
        start = time.perf_counter()
        for _ in range(5):
            floor16()
        floors.append((time.perf_counter() - start) / 5 / GROUP)
        warms.append(loop(warm))
        freshes.append(loop(fresh()))

    floor = statistics.median(floors)
    count = len(paths)

    def median(runs_: list[dict], key: str) -> float:
        return statistics.median(run.get(key, 0.0) for run in runs_)

    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    print(f"CPU: {cpu_name()}; TensorFlow {tf.__version__} ({threads} intra-op threads), "
          f"Python {sys.version.split()[0]}")
    print(f"{args.model} {loaded.input_size[0]}×{loaded.input_size[1]}, {layer}; {count} "
          f"{'noise' if args.noise else 'photo-like'} 640×480 JPEGs; gradcam --heatmaps (PNG + JSON + .npy); "
          f"median of {args.repeats}; groups of {size}; a fresh engine's first call (its trace): "
          f"{statistics.median(traces):.2f} s"
          + ("" if args.png_compression is None else f"; WHAT-IF: overlay PNG at zlib level {args.png_compression}")
          + ("; WHAT-IF: no fsync" if args.no_fsync else ""))
    print(f"{'ms per picture':<46}{'warm':>9}{'fresh':>9}")
    print(f"{'floor: compiled fwd+bwd, batch 16':<46}{floor * 1000:>9.1f}")
    for stage in ("capture", "decode", "draw", "write"):
        print(f"{'  ' + stage + ' (time inside, any thread)':<46}"
              f"{median(warms, stage) / count * 1000:>9.1f}{median(freshes, stage) / count * 1000:>9.1f}")
    wall_w, wall_f = median(warms, "wall") / count, median(freshes, "wall") / count
    print(f"{'  process CPU time (user + system)':<46}"
          f"{median(warms, 'cpu') / count * 1000:>9.1f}{median(freshes, 'cpu') / count * 1000:>9.1f}")
    print(f"{'  traces during the loop':<46}{median(warms, 'traces'):>9.0f}{median(freshes, 'traces'):>9.0f}")
    print(f"{'whole loop':<46}{wall_w * 1000:>9.1f}{wall_f * 1000:>9.1f}")
    print(f"{'whole loop ÷ batch-16 floor':<46}{wall_w / floor:>9.2f}{wall_f / floor:>9.2f}")


def ab(args, engine: GradCam, paths: list[Path], work: Path, layer: str, style: OutputStyle, floor16) -> None:
    """The loop's variants in turns on one warm engine; prints ms per picture and the ratio to the floor."""
    import cv2

    png, write, balanced = files.png_bytes, batch_module.write_result, getattr(batch_module, "balanced_size", None)

    def stored(path, rgb):
        bgr = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2BGR)
        flags = [cv2.IMWRITE_PNG_COMPRESSION, 0, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
        return cv2.imencode(".png", bgr, flags)[1].tobytes()

    def draw_only(image, result, path, style):
        overlay.blend(image.rgb, overlay.display_map(result.raw, image.rgb.shape[:2])[0], style.alpha, style.colormap)
        return {}

    variants = {"the loop as it is": {}, "groups of 16 (before issue 21)": {"balanced": lambda count, most: most},
                "overlay PNG stored (level 0)": {"png": stored}, "no files (draw only)": {"write": draw_only}}
    times: dict[str, list[float]] = {name: [] for name in ["floor", *variants]}
    runs = 0

    def run(variant: dict) -> float:
        nonlocal runs
        runs += 1
        files.png_bytes = variant.get("png", png)
        batch_module.write_result = variant.get("write", write)
        if balanced is not None:
            batch_module.balanced_size = variant.get("balanced", balanced)
        try:
            out = work / f"ab{runs}"
            out.mkdir()
            start = time.perf_counter()
            rows = list(explain_batch(engine, paths, out, layer=layer, method="gradcam", style=style))
            assert not [row.error for row in rows if row.error]
            return (time.perf_counter() - start) / len(paths)
        finally:
            files.png_bytes, batch_module.write_result = png, write
            if balanced is not None:
                batch_module.balanced_size = balanced

    for variant in variants.values():
        run(variant)  # every batch size traced
    for _ in range(args.repeats):
        floor16()
        start = time.perf_counter()
        for _ in range(3):
            floor16()
        times["floor"].append((time.perf_counter() - start) / 3 / GROUP)
        for name, variant in variants.items():
            times[name].append(run(variant))
    floor = statistics.median(times["floor"])
    print(f"CPU: {cpu_name()}; A/B on one warm engine, {len(paths)} pictures, median of {args.repeats}")
    print(f"{'ms per picture':<40}{'median':>9}{'÷ floor':>9}  runs")
    for name, values in times.items():
        print(f"{name:<40}{statistics.median(values) * 1000:>9.1f}{statistics.median(values) / floor:>9.2f}  "
              + " ".join(f"{v * 1000:.1f}" for v in values))


if __name__ == "__main__":
    main()
