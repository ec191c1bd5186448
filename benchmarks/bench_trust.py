"""Issue 8's speed targets for the trust report (prints numbers; not a test).

    python benchmarks/bench_trust.py [--model resnet50|demo] [--repeats N]

* The report without the sanity check is 2·(n + 1) + 1 = 103 forward passes (deletion,
  insertion, X ⊙ M) plus building those inputs; its floor is 103 passes at the per-picture cost
  of a compiled batch-32 forward pass. Target ≤ 1.2×.
* The sanity check is 8 maps on a copy of the model plus the weight copies; its floor is
  8 compiled captures on the copy plus the copy's set_weights and 8 × re-drawing its tensors
  (the re-drawing is part of the definition). Target ≤ 1.2×.
Timed in turns (see bench_methods.interleaved); medians.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_methods import build, interleaved  # noqa: E402

from gradcam_desktop.core.runtime import import_tensorflow_quietly  # noqa: E402

tf = import_tensorflow_quietly()

from gradcam_desktop.core import trust  # noqa: E402
from gradcam_desktop.core.gradcam import GradCam  # noqa: E402
from gradcam_desktop.core.images import LoadedImage  # noqa: E402
from gradcam_desktop.core.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", choices=["resnet50", "demo"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        flat, layer, spec = build(args.model, Path(work))
        engine = GradCam(load_model(spec))
        height, width = engine.loaded.input_size
        rng = np.random.default_rng(0)
        image = LoadedImage(rgb=rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), name="noise.png", path=None)
        result = engine.explain(image, layer)
        x32 = tf.constant(np.repeat(engine.model_input(image), 32, axis=0))
        forward = tf.function(lambda x: flat(x))
        passes = 2 * (trust.STEPS + 1) + 1
        copy = trust.randomized_copy(engine)
        plan = trust.cascade(engine.model)

        def report_without_sanity():
            trust.trust_report(engine, image, result, sanity=False)

        def floor_forward():
            forward(x32).numpy()

        def sanity_only():
            copy.reset()
            generator = np.random.default_rng(0)
            for group in plan:
                for path in group:
                    copy.randomize(path, generator)
                copy.explain(image, layer, result.class_index, result.method)

        def floor_sanity():
            copy.reset()  # the weight copy itself
            generator = np.random.default_rng(0)
            for group in plan:
                for path in group:
                    copy.randomize(path, generator)
                copy.engine.capture(layer).run(engine.model_input(image), np.zeros((1, engine.head.units), np.float32))

        times = interleaved({"report": report_without_sanity, "f32": floor_forward, "sanity": sanity_only,
                             "sanity_floor": floor_sanity}, args.repeats)
    floor = times["f32"] / 32 * passes
    print(f"model {args.model} {height}×{width}, layer {layer}, {passes} forward passes, {len(plan)} sanity steps")
    print(f"  floor: {passes} passes at batch-32 cost        {floor * 1000:8.0f} ms")
    print(f"  report without sanity                     {times['report'] * 1000:8.0f} ms  "
          f"{times['report'] / floor:.2f}× (target ≤ 1.2×)")
    print(f"  sanity floor: copy + re-draw + {len(plan)} captures  {times['sanity_floor'] * 1000:8.0f} ms")
    print(f"  sanity check                              {times['sanity'] * 1000:8.0f} ms  "
          f"{times['sanity'] / times['sanity_floor']:.2f}× (target ≤ 1.2×)")


if __name__ == "__main__":
    main()
