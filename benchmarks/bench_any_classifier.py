"""Issue 16's speed: the pixel and answer-only methods against their compiled floors, and an ONNX file.

    python benchmarks/bench_any_classifier.py [--model resnet50|demo] [--repeats N] [--onnx]

Each method is a number of model passes run in batches; the floor is the least that many passes
can cost: a compiled (tf.function) forward pass (occlusion, RISE) or forward + backward pass to the
input (saliency, integrated gradients, SmoothGrad, guided backprop) of a batch of 16 model inputs,
per input, times the method's passes. Printed per method: the passes, the time of one map, the
floor for those passes, and the ratio. ``--onnx`` exports the model with Keras' ONNX exporter
(needs tf2onnx and the [onnx] extra) and times occlusion of the .onnx file through ONNX Runtime
against ONNX Runtime's own batch-16 forward pass.

ResNet50 runs with random weights (built here, nothing downloaded); RISE uses 512 masks
(``--samples``) so that a run takes seconds. Prints the CPU it ran on. Not a test; the README's
Speed section quotes it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from gradcam_desktop.core.runtime import import_tensorflow_quietly

tf = import_tensorflow_quietly()
import keras  # noqa: E402

from gradcam_desktop.core import perturbation  # noqa: E402
from gradcam_desktop.core.gradcam import GradCam  # noqa: E402
from gradcam_desktop.core.images import LoadedImage  # noqa: E402
from gradcam_desktop.core.models import load_model  # noqa: E402

BATCH = 16


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_s(function, repeats: int) -> float:
    return interleaved({"x": function}, repeats)["x"]


def interleaved(functions: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed in turns (A B A B …) after one warm-up run each: on a
    shared machine a busy spell then slows the method and its floor alike."""
    for function in functions.values():
        function()  # warm-up: traces
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build(model: str, work: Path) -> tuple[keras.Model, str]:
    if model == "resnet50":
        flat = keras.applications.ResNet50(weights=None)
        spec = str(work / "resnet50.keras")
        flat.save(spec)
        return flat, spec
    return load_model("demo").model, "demo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["resnet50", "demo"], default="resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=512, help="RISE's masks (default 512)")
    parser.add_argument("--onnx", action="store_true", help="also an ONNX export through ONNX Runtime")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gradcam-bench-any-"))
    flat, spec = build(args.model, work)
    engine = GradCam(load_model(spec))
    height, width = (int(side) for side in engine.loaded.input_size)
    rng = np.random.default_rng(0)
    image = LoadedImage(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "random.png", None)
    x = engine.model_input(image)
    batch = np.repeat(x, BATCH, axis=0)
    weights = np.zeros((BATCH, engine.head.units), np.float32)
    weights[:, 0] = 1.0
    grad = engine.input_gradients()
    floors = {"forward": lambda: engine.logits(batch),
              "backward": lambda: grad(batch, weights, np.zeros(BATCH, np.float32))}
    print(f"CPU: {cpu_name()}; model {args.model} {height}×{width}; TensorFlow {tf.__version__}")
    window = perturbation.default_window(height, width)
    occlusion_passes = perturbation.occlusion_passes(height, width, window, perturbation.default_stride(window))
    methods = [("saliency", {}, 1, "backward"), ("guided-backprop", {}, 1, "backward"),
               ("integrated-gradients", {}, 50, "backward"), ("smoothgrad", {}, 26, "backward"),
               ("occlusion", {}, occlusion_passes, "forward"), ("rise", {"samples": args.samples, "seed": 0},
                                                                args.samples, "forward")]
    print(f"\n{'method':<22}{'passes':>8}{'one map':>11}{'floor':>11}{'ratio':>8}   (floor: per input at batch {BATCH})")
    for name, options, passes, kind in methods:
        # The method and its floor in turns (a batch of 16 of the right pass, per input, × the passes).
        times = interleaved({"map": lambda name=name, options=options: engine.explain(image, method=name,
                                                                                        method_options=options),
                             "floor": floors[kind]}, args.repeats)
        floor = times["floor"] / BATCH * passes
        print(f"{name:<22}{passes:>8}{times['map']:>10.2f}s{floor:>10.2f}s{times['map'] / floor:>8.2f}"
              f"   ({kind} {times['floor'] / BATCH * 1000:.0f} ms)")
    if args.onnx:
        path = work / "model.onnx"
        flat(np.zeros((1, height, width, 3), np.float32))
        flat.export(str(path), format="onnx", verbose=False)
        box = GradCam(load_model(str(path)))
        times = interleaved({"floor": lambda: box.logits(batch), "map": lambda: box.explain(image, method="occlusion")},
                            args.repeats)
        box_forward, seconds = times["floor"] / BATCH, times["map"]
        print(f"\nONNX Runtime: forward {box_forward * 1000:.1f} ms per input at batch {BATCH}; occlusion "
              f"({occlusion_passes} passes) {seconds:.2f} s = {seconds / (occlusion_passes * box_forward):.2f}× its floor")


if __name__ == "__main__":
    main()
