"""The planted Clever Hans case of the patterns tests (CLI and window): a hand-set "brightness" model
and a labelled folder where most "bright" pictures have a centred blob and a few only a bright
corner patch (a "watermark"), with an object mask per picture.

The model: Input → a fixed 3×3 'brightness' convolution (ReLU) named feat → GAP → Dense(2): class
0 ('bright') when the mean brightness is high. Weights set by hand: the map at feat is the
brightness itself, so the corner pictures' maps sit on the corner and must come out as their own
small, far cluster.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SIDE = 32
CENTRED, WATERMARKED = 20, 4


def brightness_model(folder: Path) -> Path:
    """Save the model (with its labels and sidecar) in ``folder``; its path."""
    import keras

    inputs = keras.Input((SIDE, SIDE, 3))
    feat = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="feat")
    x = feat(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    head = keras.layers.Dense(2, name="logits")
    model = keras.Model(inputs, head(x))
    feat.set_weights([np.full((3, 3, 3, 1), 1.0 / 27, np.float32), np.zeros(1, np.float32)])
    head.set_weights([np.array([[40.0, -40.0]], np.float32), np.array([-2.0, 2.0], np.float32)])
    path = folder / "bright.keras"
    model.save(path)
    (folder / "bright.labels.txt").write_text("bright\ndark\n", encoding="utf-8")
    (folder / "bright.gradcam.json").write_text('{"preprocess": "unit"}', encoding="utf-8")
    return path


def watermark_folder(root: Path) -> tuple[Path, Path]:
    """(labelled folder, masks folder) under ``root``: centred blobs and corner watermarks, all labelled
    'bright'; picture i is ``pic{i:02d}.png``, the watermarked ones are i ≥ CENTRED."""
    labelled, masks = root / "labelled", root / "masks"
    (labelled / "bright").mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(4)
    for i in range(CENTRED + WATERMARKED):
        rgb = rng.integers(0, 4, (SIDE, SIDE, 3)).astype(np.uint8)  # a dark background: the maps are the objects
        mask = np.zeros((SIDE, SIDE), np.uint8)
        if i < CENTRED:
            cy, cx = (int(v) for v in rng.integers(15, 18, 2))  # the object: near the centre, as in most photos
            cv2.circle(rgb, (cx, cy), 6, (255, 255, 255), -1)
            cv2.circle(mask, (cx, cy), 6, 255, -1)
        else:
            rgb[1:9, 1:9] = 255  # the watermark; the object mask marks a faint blob elsewhere
            cv2.circle(mask, (20, 20), 5, 255, -1)
        name = f"pic{i:02d}"
        cv2.imwrite(str(labelled / "bright" / f"{name}.png"), rgb)
        cv2.imwrite(str(masks / f"{name}.png"), mask)
    return labelled, masks
