"""Issue 19's benchmarks: ``gradcam patterns``' cost per picture against triage's, and its memory at 10,000 pictures.

    python benchmarks/bench_patterns.py [--repeats 3] [--pictures 200] [--demo-pictures 1000]
                                        [--models demo,resnet50] [--rss 1000,10000]
                                        [--skip speed|rss] [--distinct K]

Everything runs as the user runs it: a fresh Python process calling ``gradcam_desktop.cli.main``
(Python and TensorFlow start-up, opening the model, writing the tables and PNGs included).

(a) cost per picture: ``gradcam patterns`` (predict every picture, map it, cluster each class's
    maps, write patterns.csv, clusters.csv and a PNG a cluster) against ``gradcam triage --explain
    none`` (predict only) on the same labelled folder of 320×240 JPEGs, at N and 2N pictures
    (``--pictures`` N for ResNet50, ``--demo-pictures`` for the demo model, whose maps cost so
    little that 200 more pictures are lost in the noise). The four commands are timed in turns
    (bench_methods.interleaved), median of ``--repeats``. Per picture = (time at 2N − time at N)
    / N, so that start-up cancels out; the ratio of the two slopes is what a picture costs more
    in patterns. The processes' CPU time (user + system, all threads) is given beside the wall
    time: on a machine shared with other work it moves less. Where the time goes
    inside patterns is measured, best effort, by wrapping two functions in the child process:
    ``core.patterns.by_class`` (the clustering: k-NN affinity, spectral step, k-means, t-SNE)
    and ``commands.patterns.cluster_sheets`` (the cluster PNGs); left out when the internals
    moved. Models: the offline demo model (128², four classes) and ResNet50 224² with random
    weights (bench_methods.build; nothing downloaded), its class folders named 0..3.
(b) memory: peak RSS of a fresh ``gradcam patterns --model demo`` process over N 96×96 JPEGs in
    4 class folders, for each N of ``--rss``, with the peak at the end of the mapping (just
    before the clustering) and the clustering's own seconds. Each mapped picture is kept as
    SpRAy's 32 × 32 float64 grid (8 kB) until the clustering, so a growth of some kB a picture
    is by design; printed: the growth per picture between the two largest N and an
    extrapolation to 100,000 pictures. The peak is the child's VmHWM (/proc/self/status), not
    ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux keeps in ru_maxrss the high-water mark of the
    memory a process had before its exec, and a child that subprocess starts (vfork) had its
    parent's (a parent holding 1.5 GB makes ``python -c`` report 1,456 MB). This parent has
    TensorFlow and ResNet50 in memory: ru_maxrss read 1,017 MB for 1,000 pictures and for
    10,000 alike.

The pictures are drawn here (no package internals): a shape of the folder's class (circle,
square, triangle, star: the demo model's classes) of random size, colour and place on a smooth
colour field with grain, every picture different, so that the maps differ as real ones do.
``--distinct K`` makes picture i a hard link to picture i mod K instead (bench_triage's way);
K identical maps per class are a degenerate case for the clustering (exact duplicates), not
the usual one.

Duration of a full default run on this machine (AMD EPYC, 2 cores shared with other work, load
average 5–9): 42 minutes — (a) demo 8 min, (a) ResNet50 19 min, (b) 13 min, of which the
10,000-picture ``gradcam patterns`` process took 7.7 min (6.3 of them clustering). With the
machine less busy (load ~1) that process took 1.5 min, 46 s of it clustering, 44.5 s of that
t-SNE's 2-D view. The clustering's time is the noisiest figure: t-SNE's OpenMP threads lose
many times their time when the cores are shared (a t-SNE of 50 maps: 2–11 s with 2 threads
under load, 0.2–0.4 s with OMP_NUM_THREADS=1), which is why CPU times are printed beside the
wall times. Not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import cpu_name  # noqa: E402  (imports TensorFlow quietly)
from bench_methods import build, interleaved  # noqa: E402

SPEED_SIZE = (240, 320)  # height, width of the pictures of (a)
RSS_SIZE = (96, 96)  # and of (b)
CLASSES = 4  # circle, square, triangle, star: the demo model's classes, in its order
EXTRAPOLATE_TO = 100_000
CHILD = """
import importlib, json, resource, sys, time
started = time.perf_counter()
found = {}


def peak_mb():  # VmHWM, not ru_maxrss: that one keeps the parent's RSS at the fork (the docstring's (b))
    try:
        with open("/proc/self/status") as status:
            return next(int(ln.split()[1]) for ln in status if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(name, function):
    def wrapper(*args, **kwargs):
        found.setdefault(name + "_peak_before_mb", peak_mb())
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            found[name + "_s"] = found.get(name + "_s", 0.0) + time.perf_counter() - start
    return wrapper


from gradcam_desktop.cli import main

for module, name, stage in (("gradcam_desktop.core.patterns", "by_class", "cluster"),
                            ("gradcam_desktop.commands.patterns", "cluster_sheets", "sheets")):
    try:  # where patterns' time goes: best effort, left out when the internals moved
        module = importlib.import_module(module)
        setattr(module, name, timed(stage, getattr(module, name)))
    except (ImportError, AttributeError):
        pass
ready = time.perf_counter()
code = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF)
found.update(code=code, main_s=time.perf_counter() - ready, process_s=time.perf_counter() - started,
             cpu_s=usage.ru_utime + usage.ru_stime, peak_mb=peak_mb())
print("BENCH " + json.dumps(found), file=sys.stderr)
"""


# ------------------------------------------------------------------------------------------------ pictures
def draw(rng: np.random.Generator, cls: int, size: tuple[int, int]) -> Image.Image:
    """A shape of class ``cls`` (0 circle, 1 square, 2 triangle, 3 star) on a smooth colour field with grain."""
    h, w = size
    coarse = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.int16)
    field = np.clip(field + rng.normal(0, 10, field.shape), 0, 255).astype(np.uint8)
    picture = Image.fromarray(field)
    radius = rng.uniform(0.15, 0.32) * min(h, w)
    cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
    turn = rng.uniform(0, 2 * math.pi)
    corners = {1: 4, 2: 3, 3: 10}.get(cls, 72)
    angles = turn + np.arange(corners) * 2 * math.pi / corners
    reach = np.where(np.arange(corners) % 2 == 0, 1.0, 0.45) if cls == 3 else np.ones(corners)
    points = [(cx + radius * r * math.cos(a), cy + radius * r * math.sin(a)) for a, r in zip(angles, reach)]
    ImageDraw.Draw(picture).polygon(points, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return picture


def folder(work: Path, tag: str, size: tuple[int, int], count: int, distinct: int) -> Path:
    """A labelled folder ``work/<tag><count>/<class>/`` of ``count`` JPEGs (picture i in class i mod 4), hard
    links into one pool per tag, so that the folders of several counts share their first pictures."""
    pool = work / f"pool-{tag}"
    for i in range(count):
        path = pool / str(i % CLASSES) / f"img{i:05d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if distinct and i >= distinct:
            os.link(pool / str(i % distinct % CLASSES) / f"img{i % distinct:05d}.jpg", path)
        else:
            draw(np.random.default_rng([i, distinct]), i % CLASSES, size).save(path, quality=90)
    out = work / f"{tag}{count}"
    for i in range(count):
        link = out / str(i % CLASSES) / f"img{i:05d}.jpg"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(pool / str(i % CLASSES) / f"img{i:05d}.jpg", link)
    return out


# -------------------------------------------------------------------------------------------------- runs
def command(work: Path, name: str, spec: str, source: Path) -> dict:
    """One fresh process running ``gradcam <name>`` on ``source``: what the child reports, plus its wall time."""
    out = Path(tempfile.mkdtemp(prefix=f"out-{name}-", dir=work))
    argv = [name, "--model", spec, "--out-dir", str(out), str(source)]
    if name == "triage":
        argv[1:1] = ["--explain", "none"]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("BENCH ")]
    if not lines:
        print(result.stdout[-2000:], result.stderr[-3000:], sep="\n")
        raise SystemExit(f"gradcam {name} failed")
    found = json.loads(lines[-1][len("BENCH "):])
    if found["code"] not in (0, 1):  # 1: some pictures skipped, said on stderr
        print(result.stderr[-3000:])
        raise SystemExit(f"gradcam {name} exited with {found['code']}")
    found["wall_s"] = wall
    found["stdout"] = result.stdout
    return found


def median(runs: list[dict], key: str) -> float:
    values = [run[key] for run in runs if key in run]
    return statistics.median(values) if values else math.nan


def speed(work: Path, label: str, spec: str, count: int, repeats: int, distinct: int) -> None:
    small = folder(work, "speed", SPEED_SIZE, count, distinct)
    large = folder(work, "speed", SPEED_SIZE, 2 * count, distinct)
    command(work, "triage", spec, folder(work, "speed", SPEED_SIZE, CLASSES, distinct))  # warm the disk cache
    runs: dict[str, list[dict]] = {}
    contenders = {}
    for name in ("triage", "patterns"):
        for n, source in ((count, small), (2 * count, large)):
            runs[f"{name}{n}"] = []
            contenders[f"{name}{n}"] = (lambda name=name, source=source, key=f"{name}{n}":
                                        runs[key].append(command(work, name, spec, source)))
    start = time.perf_counter()
    walls = interleaved(contenders, repeats, warmup=0)
    print(f"(a) {label}: {count} and {2 * count} JPEGs {SPEED_SIZE[1]}×{SPEED_SIZE[0]} in {CLASSES} class folders, "
          f"median of {repeats} runs in turns ({time.perf_counter() - start:.0f} s)")
    print(f"    {'':34}{count:>9} pics{2 * count:>9} pics   per picture (slope)   [medians of each line]")

    def line(title: str, at_small: float, at_large: float) -> float:
        slope = (at_large - at_small) / count
        print(f"    {title:34}{at_small:11.1f} s{at_large:11.1f} s   {slope * 1000:8.1f} ms")
        return slope

    triage_slope = line("triage --explain none (process)", walls[f"triage{count}"], walls[f"triage{2 * count}"])
    patterns_slope = line("patterns (process)", walls[f"patterns{count}"], walls[f"patterns{2 * count}"])
    cpu = {name: [median(runs[f"{name}{n}"], "cpu_s") for n in (count, 2 * count)] for name in ("triage", "patterns")}
    triage_cpu = line("triage, CPU time (user + system)", *cpu["triage"])
    patterns_cpu = line("patterns, CPU time (user + system)", *cpu["patterns"])
    for run in runs[f"patterns{count}"] + runs[f"patterns{2 * count}"]:  # the parts of each run, then medians
        run["imports_s"] = run["process_s"] - run["main_s"]
        if "cluster_s" in run:  # the child could time the clustering (and perhaps the PNGs)
            run["rest_s"] = run["main_s"] - run["cluster_s"] - run.get("sheets_s", 0.0)
    parts = {key: [median(runs[f"patterns{n}"], key) for n in (count, 2 * count)]
             for key in ("rest_s", "cluster_s", "sheets_s", "imports_s")}
    titles = {"rest_s": "  open model, predict, map, write" + ("" if "sheets_s" in runs[f"patterns{count}"][0] else ", PNGs"),
              "cluster_s": "  clustering (by_class)", "sheets_s": "  cluster PNGs (cluster_sheets)",
              "imports_s": "  imports before main()"}
    for key, title in titles.items():
        if not any(map(math.isnan, parts[key])):
            line(title, *parts[key])
    clusters = [ln for ln in runs[f"patterns{2 * count}"][-1]["stdout"].splitlines() if ": cluster " in ln]
    print(f"    patterns / triage per picture: {patterns_slope / triage_slope:.1f}× wall, "
          f"{patterns_cpu / triage_cpu:.1f}× CPU  ({len(clusters)} clusters at {2 * count} pictures; "
          f"load average {os.getloadavg()[0]:.1f})", flush=True)


def rss(work: Path, counts: list[int], distinct: int) -> None:
    peaks: dict[int, float] = {}
    mapped: dict[int, float] = {}  # the peak just before the clustering
    for count in counts:
        source = folder(work, "rss", RSS_SIZE, count, distinct)
        found = command(work, "patterns", "demo", source)
        peaks[count] = found["peak_mb"]
        clusters = sum(": cluster " in ln for ln in found["stdout"].splitlines())
        detail = f" ({clusters} clusters)"
        if "cluster_peak_before_mb" in found:
            mapped[count] = found["cluster_peak_before_mb"]
            detail = (f" (at the end of the mapping {mapped[count]:5.0f} MB; clustering {found['cluster_s']:5.1f} s, "
                      f"{clusters} clusters)")
        print(f"(b) gradcam patterns of {count:6d} pictures: peak RSS {peaks[count]:6.0f} MB{detail}, "
              f"process {found['wall_s']:5.0f} s", flush=True)
    if len(peaks) >= 2:
        small, large = sorted(peaks)[-2:]
        per_picture = max(0.0, (peaks[large] - peaks[small]) / (large - small))
        estimate = peaks[large] + per_picture * max(0, EXTRAPOLATE_TO - large)
        print(f"(b) growth {per_picture * 1024:.1f} kB/picture between {small} and {large} "
              f"(a map's 32×32 float64 grid: 8 kB){mapping_growth(mapped, small, large)}; "
              f"{EXTRAPOLATE_TO:,} pictures extrapolated: {estimate:.0f} MB")


def mapping_growth(mapped: dict[int, float], small: int, large: int) -> str:
    """The growth of the peak at the end of the mapping, when the child could measure it."""
    if small not in mapped or large not in mapped:
        return ""
    return f" ({(mapped[large] - mapped[small]) / (large - small) * 1024:.1f} kB/picture by the end of the mapping)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each command (median)")
    parser.add_argument("--pictures", type=int, default=200, help="N: (a) times ResNet50 on N and 2N pictures")
    parser.add_argument("--demo-pictures", type=int, default=1000, help="N: (a) times the demo model on N and 2N pictures")
    parser.add_argument("--models", default="demo,resnet50", help="models of (a): demo and/or resnet50")
    parser.add_argument("--rss", default="1000,10000", help="comma-separated picture counts for (b)'s peak RSS")
    parser.add_argument("--skip", default="", help="speed and/or rss")
    parser.add_argument("--distinct", type=int, default=0, help="hard links to K distinct pictures (0: all differ)")
    args = parser.parse_args()
    models = [m for m in args.models.split(",") if m]
    if set(models) - {"demo", "resnet50"}:
        parser.error(f"--models: demo and/or resnet50, not {args.models}")
    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-patterns-"))
    began = time.perf_counter()
    print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.1f}; every figure is a fresh `gradcam` process")
    try:
        command(work, "patterns", "demo", folder(work, "warm", RSS_SIZE, 48, args.distinct))  # disk cache, not timed
        if "speed" not in args.skip:
            for model in models:
                if model == "demo":
                    speed(work, "demo model 128²", "demo", args.demo_pictures, args.repeats, args.distinct)
                else:
                    _flat, _layer, spec = build(model, work)
                    speed(work, "ResNet50 224² (random weights)", spec, args.pictures, args.repeats, args.distinct)
        if "rss" not in args.skip:
            rss(work, [int(n) for n in args.rss.split(",") if n], args.distinct)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"({time.perf_counter() - began:.0f} s in all; load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
