"""Write the demo's sample pictures to images/ from gradcam_desktop.core.demo_data (seeded).

Four single-object pictures (one per class) and two scenes with two objects of different
classes, at sizes other than the model's 128×128 (so the app's resizing is exercised, and
the non-square ones are squashed on the way in), plus images/samples.json listing every
object's class and bounding box for the localisation tests.

    python tools/make_sample_images.py [--out images]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gradcam_desktop.core import demo_data  # noqa: E402

SEED = 20240611  # distinct from the training, validation and test seeds

# (file name, (height, width), classes).  Shapes are drawn undistorted: these are for people.
SAMPLES: list[tuple[str, tuple[int, int], tuple[str, ...]]] = [
    ("circle.png", (384, 384), ("circle",)),
    ("square.png", (360, 480), ("square",)),
    ("triangle.png", (480, 360), ("triangle",)),
    ("star.png", (384, 384), ("star",)),
    ("two_objects_circle_star.png", (360, 480), ("circle", "star")),
    ("two_objects_square_triangle.png", (384, 384), ("square", "triangle")),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "images")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    entries = []
    for i, (name, size, classes) in enumerate(SAMPLES):
        # One generator per picture: editing one entry does not change the others.
        rng = np.random.default_rng([SEED, i])
        if len(classes) == 1:
            rgb, k, mask = demo_data.make_sample(rng, size, classes[0], stretch_jitter=False)
            ks, masks = [k], [mask]
        else:
            rgb, ks, masks = demo_data.make_scene(rng, list(classes), size, stretch_jitter=False)
        if not cv2.imwrite(str(args.out / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {args.out / name}")
        entries.append({
            "file": name,
            "width": size[1],
            "height": size[0],
            "objects": [
                {"class": demo_data.CLASS_NAMES[k], "class_index": k, "bbox": list(demo_data.bounding_box(m)),
                 "area": int(m.sum())}
                for k, m in zip(ks, masks)
            ],
        })
        print(f"{name}: {', '.join(o['class'] for o in entries[-1]['objects'])}")

    manifest = {
        "description": "Synthetic demo pictures made by tools/make_sample_images.py",
        "classes": list(demo_data.CLASS_NAMES),
        "bbox_format": "[x0, y0, x1, y1] in pixels of the picture, x1 and y1 exclusive",
        "images": entries,
    }
    (args.out / "samples.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
