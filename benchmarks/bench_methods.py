"""Issue 7's speed: batched maps, the gradient methods and Score-CAM against their compiled floors.

    python benchmarks/bench_methods.py [--quick] [--model resnet50|demo] [--repeats N] [--images N]

(a) batching: per-image cost of ``gradcam batch``'s engine call (``GradCam.explain_many`` over
    16 decoded 640×480 pictures) against the floor, a compiled (tf.function) forward + backward
    pass of 16 model inputs to the layer — the least work any batched Grad-CAM can do; the
    same for batch 1; and the whole ``gradcam batch`` loop (decode, explain, write) with groups
    of 16 and of 1.
(b) methods: each gradient method's explain_many of 16 pictures against Grad-CAM's (the same
    capture, another reduction), the reduction alone per picture, and switching the method of a
    picture the engine has captured already (the capture cache: no model run).
(c) Score-CAM with --max-channels 64 against its forward passes: 64 masks = 2 compiled
    forward passes of a batch of 32 model inputs.

ResNet50 runs with random weights (weights=None), built and saved as benchmarks/bench_engine.py
does: timing does not depend on the weights and nothing is downloaded. Prints a table (medians
of ``--repeats`` runs); the README's numbers come from here. Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gradcam_desktop.core.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()
import keras  # noqa: E402

from gradcam_desktop.core import cams  # noqa: E402
from gradcam_desktop.core.batch import GROUP, explain_batch  # noqa: E402
from gradcam_desktop.core.gradcam import GradCam  # noqa: E402
from gradcam_desktop.core.images import load_image  # noqa: E402
from gradcam_desktop.core.models import load_model  # noqa: E402
from gradcam_desktop.core.scorecam import MAX_BATCH  # noqa: E402

SCORECAM_CHANNELS = 64


def median_s(function, repeats: int, warmup: int = 1) -> float:
    return interleaved({"x": function}, repeats, warmup)["x"]


def interleaved(functions: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, timed in turns (A B C A B C …): on a shared machine a busy
    spell then slows every contender, not just the one that happened to run during it."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build(model: str, work: Path):
    """(flat Keras model, layer, spec for load_model) as bench_engine.py builds them."""
    if model == "resnet50":
        flat = keras.applications.ResNet50(weights=None)
        spec = str(work / "resnet50.keras")
        flat.save(spec)
        return flat, "conv5_block3_out", spec
    flat = load_model("demo").model
    return flat, GradCam(load_model("demo")).default_layer, "demo"


def compiled_floors(flat, layer: str, inputs: np.ndarray) -> dict:
    """The compiled floors as functions: forward+backward at batch 16 and 1, forward at batch 32."""
    grad_model = keras.Model(flat.inputs, [flat.get_layer(layer).output, flat.output])

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            conv, preds = grad_model(x)
            score = tf.reduce_sum(tf.reduce_max(preds, axis=-1))
        return conv, tape.gradient(score, conv)

    @tf.function
    def forward(x):
        return flat(x)

    x16, x1 = tf.constant(inputs[:GROUP]), tf.constant(inputs[:1])
    x32 = tf.constant(np.concatenate([inputs] * (MAX_BATCH // len(inputs) + 1))[:MAX_BATCH])
    return {"fb16": lambda: [t.numpy() for t in forward_backward(x16)],
            "fb1": lambda: [t.numpy() for t in forward_backward(x1)],
            "f32": lambda: forward(x32).numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["resnet50", "demo"], default="resnet50")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per number (median)")
    parser.add_argument("--images", type=int, default=48, help="pictures for the whole-loop measurement")
    parser.add_argument("--quick", action="store_true", help="3 repeats, 16 pictures: a rough look (2–3 minutes on 2 cores)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.images = 3, GROUP
    skip = set(filter(None, args.skip.split(",")))

    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-methods-"))
    flat, layer, spec = build(args.model, work)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(max(args.images, GROUP)):
        path = work / f"img{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    images = [load_image(p) for p in paths[:GROUP]]
    # As `gradcam batch` has it: no input cache, and no capture cache (every picture is new there).
    engine = GradCam(load_model(spec), capture_cache_mb=0)
    inputs = np.concatenate([engine.model_input(image) for image in images])
    floors = compiled_floors(flat, layer, inputs)
    rows: list[tuple[str, float, str]] = []
    if "a" not in skip:
        # In turns, so that the ratios compare runs made under the same load.
        times = interleaved({"fb16": floors["fb16"], "fb1": floors["fb1"],
                             "many": lambda: engine.explain_many(images, layer),
                             "single": lambda: engine.explain(images[0], layer)}, args.repeats)
        fb16 = times["fb16"] / GROUP
        rows += [("floor: compiled forward+backward, batch 16", fb16, "fb16"),
                 ("floor: compiled forward+backward, batch 1", times["fb1"], "fb16"),
                 ("(a) engine: explain_many of 16 (batch 16)", times["many"] / GROUP, "fb16"),
                 ("(a) engine: explain (batch 1)", times["single"], "fb16")]
        loops = {}
        for group in (GROUP, 1):
            def loop(group=group):
                out = Path(tempfile.mkdtemp(dir=work))
                done = list(explain_batch(engine, paths[:args.images], out, layer=layer, group_size=group))
                assert not any(row.error for row in done), [row.error for row in done if row.error]
            loops[group] = loop
        times = interleaved(loops, max(1, args.repeats // 3))
        for group, seconds in times.items():
            rows.append((f"(a) gradcam batch loop, groups of {group} (decode+write)", seconds / args.images, "fb16"))
    else:
        fb16 = median_s(floors["fb16"], args.repeats) / GROUP

    if "b" not in skip:
        methods = [name for name, m in cams.METHODS.items() if m.reduce is not None]
        times = interleaved({name: lambda name=name: engine.explain_many(images, layer, method=name)
                             for name in methods}, args.repeats)
        for name in methods:
            rows.append((f"(b) {name}: explain_many of 16", times[name] / GROUP, "gradcam"))
        captured = engine.capture(layer).run(inputs[:1], np.zeros((1, engine.head.units), np.float32),
                                             np.ones(1, np.float32))
        A, g = captured.activations[0], captured.gradients[0]
        times = interleaved({name: lambda name=name: cams.reduce(name, A, g) for name in methods}, args.repeats * 5)
        for name in methods:
            rows.append((f"(b) {name}: reduction alone", times[name], "gradcam"))
        cached = GradCam(load_model(spec))  # the window's engine: captures cached per picture
        cached.explain(images[0], layer)
        switch = median_s(lambda: cached.explain(images[0], layer, method="layercam"), args.repeats)
        rows.append(("(b) switch method on a captured picture", switch, "gradcam"))

    if "c" not in skip:
        times = interleaved({"f32": floors["f32"],
                             "score": lambda: engine.explain(images[0], layer, method="scorecam",
                                                             max_channels=SCORECAM_CHANNELS)},
                            max(1, args.repeats // 2))
        masks_floor = SCORECAM_CHANNELS / MAX_BATCH * times["f32"]
        rows += [("(c) floor: 64 masks = 2 × compiled forward of 32", masks_floor, "masks"),
                 ("(c) Score-CAM --max-channels 64 (per image)", times["score"], "masks")]
        channels = int(engine.capture(layer).run(inputs[:1], np.zeros((1, engine.head.units), np.float32),
                                                 np.ones(1, np.float32)).activations.shape[-1])
        rows.append((f"(c) Score-CAM, all {channels} channels (estimated: ×{channels / SCORECAM_CHANNELS:g})",
                     channels / SCORECAM_CHANNELS * times["score"], "masks"))

    bases = {"fb16": fb16,
             "gradcam": next((s for label, s, _ in rows if label.startswith("(b) gradcam:")), np.nan),
             "masks": next((s for label, s, _ in rows if label.startswith("(c) floor")), np.nan)}
    threads = tf.config.threading.get_intra_op_parallelism_threads() or "default"
    size = engine.loaded.input_size
    print(f"model: {args.model} {size[0]}×{size[1]}, layer {layer}, {threads} intra-op threads, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {sys.version.split()[0]}, "
          f"median of {args.repeats}")
    print(f"{'what':<58}{'ms/image':>10}{'ratio':>8}  against")
    names = {"fb16": "batch-16 floor", "gradcam": "Grad-CAM explain_many", "masks": "its forward passes"}
    for label, seconds, base in rows:
        print(f"{label:<58}{seconds * 1000:>10.2f}{seconds / bases[base]:>8.2f}  {names[base]}")


if __name__ == "__main__":
    main()
