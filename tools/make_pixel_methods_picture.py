"""Render docs/pixel_methods.png: one sample picture's map for 'star' by Grad-CAM (a region, at a
layer) beside the pixel methods (which pixels) and the answer-only methods (occlusion, RISE), and
occlusion of the demo model exported to ONNX (a file that shows no layers, explained on its
probabilities).

    python tools/make_pixel_methods_picture.py      (the ONNX panel needs tf2onnx and the [onnx] extra)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from gradcam_desktop.core import files, overlay
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import demo_model_path, load_model

ROOT = Path(__file__).resolve().parents[1]
CLASS = "star"
SIDE = 220


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    out = cv2.resize(rgb, (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    cv2.rectangle(out, (0, 0), (SIDE, 26), (255, 255, 255), -1)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return out


def panel(engine: GradCam, image, method: str, title: str, **options) -> np.ndarray:
    result = engine.explain(image, None, CLASS, method, method_options=options or None)
    display, _ = overlay.display_map(result.raw, image.rgb.shape[:2])
    return label(overlay.blend(image.rgb, display, 0.5, "jet"), title)


def main() -> None:
    import keras

    engine = GradCam(load_model("demo"))
    image = load_image(ROOT / "images" / "two_objects_circle_star.png")
    panels = [label(image.rgb, "input"),
              panel(engine, image, "gradcam", "Grad-CAM (a layer)"),
              panel(engine, image, "saliency", "Saliency"),
              panel(engine, image, "integrated-gradients", "Integrated Gradients"),
              panel(engine, image, "guided-gradcam", "Guided Grad-CAM"),
              panel(engine, image, "occlusion", "Occlusion"),
              panel(engine, image, "rise", "RISE", seed=0)]
    with tempfile.TemporaryDirectory() as folder:
        onnx = Path(folder) / "demo.onnx"
        model = keras.saving.load_model(demo_model_path(), compile=False)
        model(np.zeros((1, *model.input_shape[1:]), np.float32))  # Keras' ONNX export wants a called model
        model.export(str(onnx), format="onnx")
        labels = demo_model_path().with_name(demo_model_path().stem + ".labels.txt")
        (Path(folder) / "demo.labels.txt").write_text(labels.read_text())
        box = GradCam(load_model(str(onnx)))
        panels.append(panel(box, image, "occlusion", "Occlusion of the .onnx"))
    panels += [np.full((SIDE, SIDE, 3), 255, np.uint8)] * (8 - len(panels))  # two rows of four
    gap = np.full((SIDE, 6, 3), 255, np.uint8)
    rows = [np.concatenate([part for p in panels[i:i + 4] for part in (p, gap)][:-1], axis=1) for i in (0, 4)]
    picture = np.concatenate([rows[0], np.full((6, rows[0].shape[1], 3), 255, np.uint8), rows[1]], axis=0)
    files.atomic_write_png(ROOT / "docs" / "pixel_methods.png", picture)
    print("wrote docs/pixel_methods.png")


if __name__ == "__main__":
    main()
