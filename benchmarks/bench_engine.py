"""Grad-CAM speed: ours vs the compiled floor vs the keras.io recipe, in one run.

    python benchmarks/bench_engine.py [--model resnet50|demo] [--images 20] [--repeats 20]

- floor: one compiled (tf.function) forward + backward pass to the last conv layer of a flat
  Keras model built the keras.io way — the least work any Grad-CAM can do per image.
- recipe: the keras.io "Grad-CAM class activation visualization" recipe as published: eager,
  the gradient model rebuilt on every call.
- engine: ``GradCam.explain`` in steady state (model input prepared from a decoded image).
- batch: ``gradcam batch``'s loop (``core.batch.explain_batch``) per image in steady state —
  decoding the JPEG, explaining, blending and writing the overlay PNG atomically — timed over N
  images on an engine that has already run (model loading and tracing are start-up costs).

ResNet50 runs with random weights (weights=None): timing does not depend on the weights and
nothing is downloaded. Prints a table; README numbers come from here.
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

from gradcam_desktop.core.batch import explain_batch  # noqa: E402
from gradcam_desktop.core.gradcam import GradCam  # noqa: E402
from gradcam_desktop.core.images import load_image  # noqa: E402
from gradcam_desktop.core.models import load_model  # noqa: E402


def median_ms(function, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def keras_io_recipe(img_array, model, last_conv_layer_name, pred_index=None):
    """Verbatim logic of the keras.io recipe (make_gradcam_heatmap)."""
    grad_model = keras.models.Model(model.inputs, [model.get_layer(last_conv_layer_name).output, model.output])
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    heatmap = last_conv_layer_output[0] @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def batch_ms(engine: GradCam, paths: list[Path], out_dir: Path) -> float:
    out_dir.mkdir(exist_ok=True)
    start = time.perf_counter()
    rows = list(explain_batch(engine, paths, out_dir))
    elapsed = time.perf_counter() - start
    if any(row.error for row in rows):
        raise SystemExit(f"batch failed: {[row.error for row in rows if row.error]}")
    return elapsed / len(paths) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["resnet50", "demo"], default="resnet50")
    parser.add_argument("--images", type=int, default=40, help="extra images for the batch measurement")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-"))
    if args.model == "resnet50":
        flat = keras.applications.ResNet50(weights=None)
        layer, spec = "conv5_block3_out", str(work / "resnet50.keras")
        flat.save(spec)
    else:
        spec = "demo"
        flat = load_model("demo").model
        layer = GradCam(load_model("demo")).default_layer
    loaded = load_model(spec)
    engine = GradCam(loaded)
    size = loaded.input_size

    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.images):
        path = work / f"img{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    image = load_image(paths[0])
    batch = engine.model_input(image)

    grad_model = keras.Model(flat.inputs, [flat.get_layer(layer).output, flat.output])

    @tf.function
    def floor(x):
        with tf.GradientTape() as tape:
            conv, preds = grad_model(x)
            score = tf.reduce_max(preds[0])
        grads = tape.gradient(score, conv)
        return conv, grads

    x = tf.constant(batch)
    floor_ms = median_ms(lambda: [t.numpy() for t in floor(x)], args.repeats)
    recipe_ms = median_ms(lambda: keras_io_recipe(batch, flat, layer), max(5, args.repeats // 4), warmup=1)
    engine_ms = median_ms(lambda: engine.explain(image, layer), args.repeats)
    batch_engine = GradCam(load_model(spec))  # as `gradcam batch` has it: no input cache
    batch_engine.explain(image, layer)  # warm: trace and one-time runtime costs
    per_image = statistics.median(batch_ms(batch_engine, paths, work / f"out{i}") for i in range(3))

    threads = tf.config.threading.get_inter_op_parallelism_threads() or "default"
    print(f"model: {args.model} {size[0]}×{size[1]}, layer {layer}, {threads} inter-op threads, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}, Python {sys.version.split()[0]}")
    print(f"{'what':<44}{'ms/image':>10}{'× floor':>10}")
    for label, value in (
        ("floor: compiled forward+backward", floor_ms),
        ("engine: GradCam.explain (steady state)", engine_ms),
        ("gradcam batch (decode+explain+write, 640×480)", per_image),
        ("keras.io recipe (eager, rebuilt per call)", recipe_ms),
    ):
        print(f"{label:<44}{value:>10.1f}{value / floor_ms:>10.2f}")


if __name__ == "__main__":
    main()
