"""Keras 2 against Keras 3: ResNet50 opened through each, measured against its own compiled floor.

    python benchmarks/bench_keras2.py [--quick] [--repeats N] [--savedmodel]

ResNet50 (224², weights=None, 1000 classes) is built once with Keras 3 (``keras.applications``,
saved as .keras) and once with Keras 2 (``tf_keras.applications``, saved as .h5; with
--savedmodel also as a SavedModel folder), each opened through ``core.models.load_model`` as a
user's file would be. For each model, side by side:

- single map: ``GradCam.explain`` of one decoded 640×480 picture in steady state against the
  floor, a compiled (tf.function) forward + backward pass of 1 model input to the default layer
  ``conv5_block3_out``, written here with the model's own framework and not the engine's graph
  walk: a sub-model (``Model(inputs, [layer output, classifier input])``) called under a
  GradientTape, then the pre-softmax logits from the classifier's kernel and bias;
- batch of 16: ``GradCam.explain_many`` of 16 pictures against the same floor at batch 16;
- Score-CAM ``max_channels=64`` (one picture) against its floor: 64 masked forward passes as
  2 compiled forward passes of a batch of 32 model inputs.

Besides wall time it reports the ratio of process CPU time (all threads), which the load of a
shared machine moves far less; and the first map of each model (tracing the capture), not timed
in turns.

Every model's engine and floors for one line are timed in turns (Keras 3 engine, its floor, Keras 2
engine, its floor, …), so a busy spell on a shared machine slows all of them; medians of --repeats
(Score-CAM: half as many). Engines run without the capture cache, as ``gradcam batch`` does, so
every map runs the model. Prints a table (ms per picture, floor, ratio), the CPU, the versions and
each engine's trace counts (a steady state traces nothing more). Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from gradcam_desktop.core.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()
import keras  # noqa: E402

from gradcam_desktop.core.gradcam import GradCam  # noqa: E402
from gradcam_desktop.core.images import load_image  # noqa: E402
from gradcam_desktop.core.models import load_model  # noqa: E402
from gradcam_desktop.core.scorecam import MAX_BATCH  # noqa: E402

LAYER = "conv5_block3_out"
BATCH = 16
SCORECAM_CHANNELS = 64


def interleaved(functions: dict, repeats: int, warmup: int = 2) -> dict:
    """Median (wall, process CPU) seconds of each function, timed in turns (A B C A B C …).

    The CPU time (all of the process's threads) counts the work done whatever else the machine
    runs: on a shared 2-core machine the same call took 2.6–7.3 s of wall time and 5.0–5.3 s of CPU."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: tuple(statistics.median(column) for column in zip(*values)) for name, values in times.items()}


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    simd = [flag for flag in ("avx2", "avx512f", "amx_tile") if flag in flags]
    return f"{name} ({', '.join(simd) or 'no AVX2'}), {os.cpu_count()} logical cores"


def build(work: Path, savedmodel: bool) -> list[tuple[str, str]]:
    """(label, spec for load_model) of each saved ResNet50."""
    specs = []
    model3 = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=1000)
    path = work / "resnet50_keras3.keras"
    model3.save(path)
    specs.append(("Keras 3 (.keras)", str(path)))
    del model3

    import tf_keras

    model2 = tf_keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=1000)
    path = work / "resnet50_keras2.h5"
    model2.save(path)
    specs.append(("Keras 2 (.h5)", str(path)))
    if savedmodel:
        folder = work / "resnet50_keras2_savedmodel"
        model2.save(folder, save_format="tf")
        specs.append(("Keras 2 (SavedModel)", str(folder)))
    del model2
    return specs


def framework_of(model):
    """The package whose Model class built ``model`` (keras or tf_keras), for the floor's sub-model."""
    if "tf_keras" in sys.modules:
        import tf_keras

        if isinstance(model, tf_keras.Model):
            return tf_keras
    return keras


def compiled_floors(model, inputs: np.ndarray) -> dict:
    """Forward+backward to LAYER at batch 16 and 1 (pre-softmax score), forward at batch 32."""
    framework = framework_of(model)
    classifier = model.layers[-1]  # ResNet50's Dense "predictions", softmax built in
    features = framework.Model(model.inputs, [model.get_layer(LAYER).output, classifier.input])
    kernel, bias = classifier.kernel, classifier.bias

    @tf.function
    def forward_backward(x):
        with tf.GradientTape() as tape:
            conv, pooled = features(x, training=False)
            logits = tf.matmul(pooled, kernel) + bias
            score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
        return conv, tape.gradient(score, conv)

    @tf.function
    def forward(x):
        return model(x, training=False)

    x16, x1 = tf.constant(inputs[:BATCH]), tf.constant(inputs[:1])
    x32 = tf.constant(np.concatenate([inputs] * (MAX_BATCH // len(inputs) + 1))[:MAX_BATCH])
    return {"fb16": lambda: [t.numpy() for t in forward_backward(x16)],
            "fb1": lambda: [t.numpy() for t in forward_backward(x1)],
            "f32": lambda: forward(x32).numpy()}


@dataclass
class Contender:
    label: str
    engine: GradCam
    floors: dict
    seconds: dict = field(default_factory=dict)  # "engine"/"floor" -> [(wall, cpu) per line]
    first_map: float = 0.0  # the first explain: trace, instantiate, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed turns per line (median; Score-CAM: half)")
    parser.add_argument("--quick", action="store_true", help="3 repeats: a rough look (about 3 minutes on 2 cores)")
    parser.add_argument("--savedmodel", action="store_true", help="also the Keras 2 model saved as a SavedModel folder")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 3

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-keras2-"))
    specs = build(work, args.savedmodel)
    rng = np.random.default_rng(0)
    images = []
    for i in range(BATCH):
        path = work / f"img{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        images.append(load_image(path))

    contenders = []
    for label, spec in specs:
        loaded = load_model(spec)
        # As `gradcam batch` has it: no capture cache, so every map runs the model.
        engine = GradCam(loaded, capture_cache_mb=0)
        assert engine.default_layer == LAYER, (label, engine.default_layer)
        inputs = np.concatenate([engine.model_input(image) for image in images])
        start = time.perf_counter()
        engine.explain(images[0], LAYER)
        first = time.perf_counter() - start
        contenders.append(Contender(label, engine, compiled_floors(loaded.model, inputs), first_map=first))

    def turns(repeats: int, make) -> None:
        """Time every contender's (engine, floor) pair of one line in turns; store the medians."""
        functions = {}
        for i, c in enumerate(contenders):
            engine_fn, floor_fn = make(c)
            functions[(i, "engine")], functions[(i, "floor")] = engine_fn, floor_fn
        for (i, kind), seconds in interleaved(functions, repeats).items():
            contenders[i].seconds.setdefault(kind, []).append(seconds)

    lines = ["single map (explain, batch 1)", f"batch of {BATCH} (explain_many)",
             f"Score-CAM max_channels={SCORECAM_CHANNELS}"]
    turns(args.repeats, lambda c: (lambda: c.engine.explain(images[0], LAYER), c.floors["fb1"]))
    turns(args.repeats, lambda c: (lambda: c.engine.explain_many(images, LAYER), c.floors["fb16"]))
    turns(max(1, args.repeats // 2),
          lambda c: (lambda: c.engine.explain(images[0], LAYER, method="scorecam", max_channels=SCORECAM_CHANNELS),
                     c.floors["f32"]))
    per_image = [1.0, float(BATCH), 1.0]  # divide the line's seconds by this
    floor_scale = [1.0, 1.0 / BATCH, SCORECAM_CHANNELS / MAX_BATCH]  # the floor's calls per picture

    import tf_keras

    print(f"CPU: {cpu_name()}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, tf_keras {tf_keras.__version__}, "
          f"Python {sys.version.split()[0]}, NumPy {np.__version__}; intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}")
    print(f"ResNet50 224², weights=None, layer {LAYER}; medians of {args.repeats} turns "
          f"(Score-CAM {max(1, args.repeats // 2)}), engine and floor interleaved across models")
    print(f"floors: single/batch = compiled forward+backward of 1 / {BATCH} inputs (sub-model + logits); "
          f"Score-CAM = {SCORECAM_CHANNELS // MAX_BATCH} × compiled forward of {MAX_BATCH}")
    print()
    print(f"{'model':<22}{'what':<34}{'ms/image':>10}{'floor ms':>10}{'ratio':>8}{'cpu ratio':>11}")
    ratios: dict[str, list[tuple[float, float]]] = {}
    for line, name in enumerate(lines):
        for c in contenders:
            (engine_s, engine_cpu), (floor_s, floor_cpu) = c.seconds["engine"][line], c.seconds["floor"][line]
            engine_ms = engine_s / per_image[line] * 1000
            floor_ms = floor_s * floor_scale[line] * 1000
            cpu_ratio = (engine_cpu / per_image[line]) / (floor_cpu * floor_scale[line])
            ratios.setdefault(c.label, []).append((engine_ms / floor_ms, cpu_ratio))
            print(f"{c.label:<22}{name:<34}{engine_ms:>10.1f}{floor_ms:>10.1f}{engine_ms / floor_ms:>8.2f}"
                  f"{cpu_ratio:>11.2f}")
    reference = contenders[0].label
    print()
    for c in contenders[1:]:
        pairs = zip(ratios[c.label], ratios[reference])
        relative = ", ".join(f"{r[0] / r3[0]:.2f} ({r[1] / r3[1]:.2f})" for r, r3 in pairs)
        print(f"{c.label} ratio ÷ {reference} ratio, wall (cpu), single / batch / Score-CAM: {relative}")
    for c in contenders:
        print(f"{c.label}: first map {c.first_map:.1f} s (trace + run); trace counts {dict(c.engine.trace_counts)}, "
              f"capture cache hits {c.engine.capture_hits}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
