"""Render docs/readme_demo.png: one sample image, and the demo model's maps for two classes.

    python tools/make_readme_picture.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gradcam_desktop.core import files, overlay
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model

ROOT = Path(__file__).resolve().parents[1]


def label(rgb: np.ndarray, text: str) -> np.ndarray:
    out = rgb.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 30), (255, 255, 255), -1)
    cv2.putText(out, text, (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (20, 20, 20), 1, cv2.LINE_AA)
    return out


def main() -> None:
    engine = GradCam(load_model("demo"))
    image = load_image(ROOT / "images" / "two_objects_circle_star.png")
    panels = [label(image.rgb, "input")]
    for name in ("circle", "star"):
        explanation = engine.explain(image, None, name)
        display, _ = overlay.display_map(explanation.raw, image.rgb.shape[:2])
        panels.append(label(overlay.blend(image.rgb, display, 0.5, "jet"), f"Grad-CAM for '{name}'"))
    gap = np.full((image.rgb.shape[0], 8, 3), 255, np.uint8)
    picture = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    files.atomic_write_png(ROOT / "docs" / "readme_demo.png", picture)
    print("wrote docs/readme_demo.png")


if __name__ == "__main__":
    main()
