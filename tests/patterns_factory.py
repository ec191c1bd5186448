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


# ------------------------------------------------------------------------------ synthetic maps (no model)
# Raw attribution maps drawn directly, for SpRAy's own tests and benchmarks/sweep_spray.py: Gaussian
# blobs with jittered centres and uniform noise. Plain NumPy, nothing else.

GRID = 32
#: Three planted strategies on the 32 × 32 grid: two object strategies (broad blobs 14 cells apart) and a
#: "Clever Hans" one — a small sharp blob in the far corner (a watermark).
PLANTED_CENTRES = ((10.0, 8.0), (10.0, 22.0), (27.0, 27.0))
PLANTED_WIDTHS = (3.0, 3.0, 1.5)


def blob(cy: float, cx: float, width: float, size: int = GRID) -> np.ndarray:
    """A Gaussian blob (peak 1) centred at (``cy``, ``cx``) on a ``size`` × ``size`` grid."""
    y, x = np.mgrid[:size, :size]
    return np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))


def strategies(seed: int, counts: tuple[int, ...], *, centres=PLANTED_CENTRES, widths=PLANTED_WIDTHS,
               jitter: float = 0.5, noise: float = 0.05, size: int = GRID) -> tuple[list[np.ndarray], np.ndarray]:
    """Raw maps of planted strategies (``counts[g]`` maps of strategy g: a blob at ``centres[g]`` of
    width ``widths[g]``, centre jittered by N(0, ``jitter``) cells, plus uniform noise) and the group of each."""
    rng = np.random.default_rng(seed)
    scale = size / GRID
    maps, groups = [], []
    for group, ((cy, cx), width, count) in enumerate(zip(centres, widths, counts)):
        for _ in range(count):
            centre = (cy + rng.normal(0, jitter)) * scale, (cx + rng.normal(0, jitter)) * scale
            maps.append(blob(*centre, width * scale, size) + noise * rng.random((size, size)))
            groups.append(group)
    return maps, np.array(groups)


def wide_strategy(seed: int, count: int, *, jitter: float = 3.0, size: int = GRID) -> list[np.ndarray]:
    """ONE strategy drawn loosely: a blob near the centre, its centre jittered by N(0, ``jitter``) cells,
    its width 2 to 5 cells, its noise 0 to 0.15 of the peak — one cluster is the right answer."""
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(count):
        cy, cx = 16 + rng.normal(0, jitter), 16 + rng.normal(0, jitter)
        maps.append(blob(cy, cx, rng.uniform(2.0, 5.0), size) + rng.uniform(0.0, 0.15) * rng.random((size, size)))
    return maps


#: The marked maps of shortcut_maps: the share of each map's mass on the marker (what Grad-CAM put on a
#: 7 × 7 marker in tests/core/test_planted_shortcut.py's trained models: 43 % to 66 % of a marked map).
MARKER_SHARE = (0.43, 0.66)


def shortcut_maps(seed: int, plain: int, marked: int, *, share: tuple[float, float] = MARKER_SHARE,
                  side: int = 24) -> tuple[list[np.ndarray], np.ndarray]:
    """Grad-CAM-like maps (``side`` × ``side``, a 24 × 24 last convolution of 48 × 48 pictures) of one
    class: ``plain`` maps of the object alone and ``marked`` maps whose mass lies ``share`` on a corner
    marker, the rest on the object; then interleaved at random. (maps, which are marked).

    The object as in test_planted_shortcut.py's pictures: a disk of radius 7 to 9 pixels centred at
    pixel 20 to 28 (rows and columns), i.e. a blob of width radius / 4 cells at centre / 2; the marker
    pixels 3..9, a blob of width 1.5 cells at cell 3. Each map also gets uniform noise of 0 to 0.1 of
    its peak and a faint second blob anywhere (10 % to 30 % of the object's peak, width 2 to 4 cells):
    real maps are not clean.
    """
    rng = np.random.default_rng(seed)
    cell = side / 48.0
    maps, flags = [], []
    for is_marked in [False] * plain + [True] * marked:
        cy, cx = (float(v) * cell for v in rng.integers(20, 29, 2))
        radius = float(rng.integers(7, 10)) * cell
        thing = blob(cy, cx, radius / 2.0, side)
        thing += rng.uniform(0.1, 0.3) * blob(*(float(v) for v in rng.uniform(0, side, 2)), rng.uniform(2, 4), side)
        thing /= thing.sum()
        if is_marked:
            mark = blob(6.0 * cell, 6.0 * cell, 1.5, side)
            s = rng.uniform(*share)
            thing = (1.0 - s) * thing + s * mark / mark.sum()
        thing = thing / thing.max()
        maps.append(thing + rng.uniform(0.0, 0.1) * rng.random((side, side)))
        flags.append(is_marked)
    order = rng.permutation(len(maps))
    return [maps[i] for i in order], np.array(flags)[order]
