"""Issue 9's speed and memory: folder triage of 1-megapixel JPEGs with ResNet50 (224², random weights).

    python benchmarks/bench_triage.py [--repeats N] [--pictures N] [--rss 256,1024] [--skip speed|rss]

(a) speed: per-picture cost of ``core.triage.triage`` (decode + resize in two threads, batches
    of 32 through ``GradCam.logits``) against its floor, a compiled (tf.function) forward pass
    of a batch of 32 model inputs already in memory. Target: ≤ 1.25×. Timed in turns
    (bench_methods.interleaved) so that both see the same load on a shared machine.
(b) memory: peak RSS of a fresh process running ``gradcam triage --explain none`` over N
    pictures, for each N of ``--rss``. Rows hold paths and numbers, so the peak should not grow
    with N; the growth per picture between the two largest N is printed with an extrapolation to
    10,000 pictures (target < 1.5 GB). The N files are hard links to 8 distinct JPEGs: every one
    is decoded, and the disk holds 8.

ResNet50 is built and saved as bench_methods.build does (nothing downloaded). Not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from bench_methods import build, interleaved
from PIL import Image

from gradcam_desktop.core.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()

from gradcam_desktop.core.gradcam import GradCam  # noqa: E402
from gradcam_desktop.core.models import load_model  # noqa: E402
from gradcam_desktop.core.triage import BATCH, LabelledPicture, triage  # noqa: E402

SIZE = (866, 1155)  # height, width: 1.0 megapixel, a 4:3 photo
DISTINCT = 8
RSS_SCRIPT = """
import resource, sys
from gradcam_desktop.cli import main
code = main(sys.argv[1:])
print("peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "code", code, file=sys.stderr)
"""


def photos(folder: Path, count: int) -> list[Path]:
    """``count`` 1-MP JPEGs in class folders 0..3: smooth colour fields with grain (JPEG sizes like photos'),
    hard links to ``DISTINCT`` originals."""
    rng = np.random.default_rng(0)
    originals = []
    for i in range(DISTINCT):
        coarse = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
        rgb = np.asarray(Image.fromarray(coarse).resize(SIZE[::-1], Image.BICUBIC), np.int16)
        rgb = np.clip(rgb + rng.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
        path = folder / f"original{i}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        originals.append(path)
    paths = []
    for i in range(count):
        target = folder / "pictures" / str(i % 4) / f"img{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(originals[i % DISTINCT], target)
        paths.append(target)
    return paths


def speed(spec: str, flat, paths: list[Path], repeats: int) -> None:
    engine = GradCam(load_model(spec))
    pictures = [LabelledPicture(str(p), int(p.parent.name)) for p in paths]
    x32 = tf.constant(np.random.default_rng(1).uniform(-100, 100, (BATCH, 224, 224, 3)).astype(np.float32))
    forward = tf.function(lambda x: flat(x, training=False))
    times = interleaved({"floor": lambda: forward(x32).numpy(),
                         "triage": lambda: list(triage(engine, pictures))}, repeats)
    floor, loop = times["floor"] / BATCH, times["triage"] / len(pictures)
    print(f"(a) floor: compiled forward, batch {BATCH}          {floor * 1000:8.1f} ms/picture")
    print(f"(a) triage of {len(pictures)} 1-MP JPEGs (decode+predict)  {loop * 1000:8.1f} ms/picture  "
          f"{loop / floor:.2f}× the floor (target ≤ 1.25×)")


def rss(spec: str, work: Path, counts: list[int]) -> None:
    peaks = {}
    for count in counts:
        photos(work, count)
        folder = work / f"rss{count}"
        for cls in range(4):  # a labelled folder holding exactly the first ``count`` pictures
            (folder / str(cls)).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            link = folder / str(i % 4) / f"img{i:05d}.jpg"
            if not link.exists():
                os.link(work / "pictures" / str(i % 4) / f"img{i:05d}.jpg", link)
        result = subprocess.run([sys.executable, "-c", RSS_SCRIPT, "triage", "--model", spec, "--explain", "none",
                                 "--out-dir", str(work / f"out{count}"), str(folder)],
                                capture_output=True, text=True, check=False)
        line = [ln for ln in result.stderr.splitlines() if ln.startswith("peak_kb")]
        if not line:
            print(result.stderr[-2000:])
            raise SystemExit("the triage run failed")
        peaks[count] = int(line[-1].split()[1]) / 1024
        print(f"(b) gradcam triage of {count:6d} pictures: peak RSS {peaks[count]:7.0f} MB", flush=True)
    if len(peaks) >= 2:
        small, large = sorted(peaks)[-2:]
        per_picture = max(0.0, (peaks[large] - peaks[small]) / (large - small))
        estimate = peaks[large] + per_picture * max(0, 10_000 - large)
        print(f"(b) growth {per_picture * 1024:.1f} kB/picture between {small} and {large}; "
              f"10,000 pictures extrapolated: {estimate:.0f} MB (target < 1536 MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per number (median)")
    parser.add_argument("--pictures", type=int, default=3 * BATCH, help="pictures per timed triage run")
    parser.add_argument("--rss", default="64,256", help="comma-separated picture counts for peak RSS")
    parser.add_argument("--skip", default="", help="speed and/or rss")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-triage-"))
    flat, _, spec = build("resnet50", work)
    print(f"ResNet50 224² (random weights), {os.cpu_count()} cores, batch {BATCH}, 1-MP JPEGs {SIZE[1]}×{SIZE[0]}")
    if "speed" not in args.skip:
        speed(spec, flat, photos(work, args.pictures), args.repeats)
    if "rss" not in args.skip:
        rss(spec, work, [int(n) for n in args.rss.split(",") if n])


if __name__ == "__main__":
    main()
