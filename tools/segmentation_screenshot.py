"""Render the real window with a small segmentation model open to docs/segmentation_window.png, and the
picture, its Grad-CAM map and the predicted mask's outline to docs/segmentation_map.png (issue 20).

    python tools/segmentation_screenshot.py [--out docs/segmentation_window.png]
                                            [--map-out docs/segmentation_map.png] [--size 1280x800]
                                            [--steps 400] [--region TOP,LEFT,BOTTOM,RIGHT]
                                            [--mode overlay|heatmap|original|side]

The model is trained here (about ten seconds on a CPU): Conv → MaxPool → Conv → UpSampling2D →
Conv2D(3, 1, softmax) on 64×64 pictures of grey noise with a red disc and a blue square, labelled
per pixel background / disc / square. The window explains the disc: its predicted mask is outlined
on the picture (View → Predicted Mask Outline). ``--region`` also draws a region (Edit → Draw Region)
and shows the map of the disc's scores summed over it. Runs offscreen with its own empty settings.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GRADCAM_DESKTOP_NO_DIALOGS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SIDE = 64  # the model's input
PICTURE = 384  # the picture shown
NAMES = ("background", "disc", "square")


def scene(rng, side: int):
    """(RGB uint8 side×side, labels int32 side×side): grey noise (made at 64 pixels and scaled, so it looks
    the same at any size), a red disc and a blue square that never overlap."""
    import cv2
    import numpy as np

    noise = rng.normal(128, 28, (SIDE, SIDE, 3)).clip(0, 255).astype(np.float32)
    rgb = cv2.resize(noise, (side, side), interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    labels = np.zeros((side, side), np.uint8)
    s = side / 64.0
    while True:
        cx, cy, r = rng.uniform(14, 50), rng.uniform(14, 50), rng.uniform(7, 13)
        qx, qy, q = rng.uniform(4, 44), rng.uniform(4, 44), rng.uniform(9, 18)
        if not (qx - r < cx < qx + q + r and qy - r < cy < qy + q + r):
            break
    colour = rng.uniform(0.75, 1.0)

    def at(value: float) -> int:
        # 64-pixel coordinates (pixel centres at integers, as OpenCV draws) at this size, in 1/16 pixels:
        # the same shapes at every size, so the 64-pixel model input of any size's picture matches training.
        return round(((value + 0.5) * s - 0.5) * 16)

    square = (at(qx), at(qy)), (at(qx + q), at(qy + q))
    cv2.rectangle(rgb, *square, (int(40 * colour), int(70 * colour), int(225 * colour)), -1, cv2.LINE_AA, shift=4)
    cv2.rectangle(labels, *square, 2, -1, shift=4)
    centre, radius = (at(cx), at(cy)), round(r * s * 16)
    cv2.circle(rgb, centre, radius, (int(230 * colour), int(50 * colour), int(40 * colour)), -1, cv2.LINE_AA, shift=4)
    cv2.circle(labels, centre, radius, 1, -1, shift=4)
    return rgb, labels.astype(np.int32)


def train(folder: Path, steps: int, seed: int = 0) -> Path:
    """The tiny segmentation net, trained on ``scene``s and saved with its class names; its path."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.UpSampling2D(2, interpolation="bilinear", name="up")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax", name="classes")(x), name="tiny_segmenter")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    batches = [scene(rng, SIDE) for _ in range(512)]
    pictures = np.stack([b[0] for b in batches]).astype(np.float32) / 255.0
    labels = np.stack([b[1] for b in batches])
    model.fit(pictures, labels, batch_size=32, epochs=max(1, steps // 16), verbose=0)
    path = folder / "tiny_segmenter.keras"
    model.save(path)
    (folder / "tiny_segmenter.labels.txt").write_text("\n".join(NAMES) + "\n", encoding="utf-8")
    return path


def map_picture(rgb, result, overlay, colormap: str = "jet"):
    """The picture with its predicted mask outlined, beside the Grad-CAM overlay with the same outline,
    titled, as one RGB array (docs/segmentation_map.png)."""
    import cv2
    import numpy as np

    from gradcam_desktop.core.annotate import caption, format_score

    h, w = rgb.shape[:2]
    mask = np.asarray(result.prediction.mask) == result.class_index
    big = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    panes = []
    for picture in (rgb, overlay):
        pane = np.ascontiguousarray(picture.copy())
        cv2.drawContours(pane, contours, -1, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.drawContours(pane, contours, -1, (0, 229, 255), 2, cv2.LINE_AA)
        if result.region is not None:  # the region drawn, magenta as in the window
            top, left, bottom, right = result.region
            corners = (round(left * w), round(top * h)), (round(right * w) - 1, round(bottom * h) - 1)
            cv2.rectangle(pane, *corners, (0, 0, 0), 4)
            cv2.rectangle(pane, *corners, (255, 79, 216), 2)
        panes.append(pane)
    gap = np.full((h, 16, 3), 255, np.uint8)
    body = np.concatenate([panes[0], gap, panes[1]], axis=1)
    share = format_score(float(result.probabilities[result.class_index]), "segmentation")
    where = "the region drawn (magenta)" if result.region is not None else "its predicted mask (outlined)"
    titles = [f"The model's mask of '{result.class_name}' ({share})", f"Grad-CAM at layer {result.layer}"]
    note = (f"{caption(result).split(' · layer')[0]}: the score explained is the sum of '{result.class_name}'s "
            f"pre-softmax scores over {where}.")
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=16)
    except (TypeError, OSError):
        font = ImageFont.load_default()

    def band(texts: list[tuple[int, str]]) -> np.ndarray:
        image = Image.new("RGB", (body.shape[1], 32), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for x, text in texts:
            draw.text((x, 7), text, fill=(25, 25, 25), font=font)
        return np.asarray(image)

    lines, words = [""], note.split()
    for word in words:  # the note wrapped to the picture's width
        line = f"{lines[-1]} {word}".strip()
        if lines[-1] and font.getlength(line) > body.shape[1] - 12:
            lines.append(word)
        else:
            lines[-1] = line
    return np.concatenate([band([(6, titles[0]), (w + 16 + 6, titles[1])]), body,
                           *(band([(6, line)]) for line in lines)], axis=0)


def _parse_region(text: str | None):
    if not text:
        return None
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 4:
        raise SystemExit("--region is TOP,LEFT,BOTTOM,RIGHT: four fractions of the picture")
    return tuple(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "segmentation_window.png"))
    parser.add_argument("--map-out", default=str(REPO / "docs" / "segmentation_map.png"))
    parser.add_argument("--size", default="1280x800", help="window size WIDTHxHEIGHT")
    parser.add_argument("--steps", type=int, default=400, help="training steps (batches of 32)")
    parser.add_argument("--region", help="also draw this region: TOP,LEFT,BOTTOM,RIGHT fractions of the picture")
    parser.add_argument("--mode", default="overlay", help="view mode: overlay, heatmap, original or side")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each map")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    region = _parse_region(args.region)

    import cv2
    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="gradcam-segmentation-"))
    model_path = train(work, args.steps)
    rgb, _labels = scene(np.random.default_rng(2024), PICTURE)
    picture = work / "disc_and_square.png"
    cv2.imwrite(str(picture), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    from PySide6.QtCore import QEventLoop, QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    settings_dir = tempfile.mkdtemp(prefix="gradcam-screenshot-")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, settings_dir)
    app = QApplication([sys.argv[0]])
    from gradcam_desktop.ui import MainWindow

    window = MainWindow()
    window.resize(width, height)
    window.show()
    shown: list = []
    errors: list[str] = []
    loop = QEventLoop()
    window.resultShown.connect(shown.append)
    window.errorShown.connect(errors.append)
    window.resultShown.connect(lambda _r: loop.quit())
    window.errorShown.connect(lambda _m: loop.quit())

    def wait() -> None:
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        timer.start(int(args.timeout * 1000))
        loop.exec()

    window.open_model(str(model_path))
    window.open_images([str(picture)])
    wait()
    if not errors and shown and shown[-1].class_index != NAMES.index("disc"):
        window.keep_class(NAMES.index("disc"))
        wait()
    if region is not None and not errors:
        window.segmentation.set_region(region)
        wait()
    window.set_view_mode(args.mode)
    if errors or not shown:
        print("segmentation screenshot: " + (errors[0] if errors else "no map was shown in time"), file=sys.stderr)
        window.close()
        return 1
    for _ in range(20):  # layouts settle
        app.processEvents()
    window.statusBar().repaint()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = window.grab().save(str(out))
    result = window.shown_result()
    combined = map_picture(rgb, result, _overlay(window, rgb))
    map_out = Path(args.map_out)
    ok = cv2.imwrite(str(map_out), cv2.cvtColor(combined, cv2.COLOR_RGB2BGR)) and ok
    window.close()
    print(f"segmentation screenshot: {out} ({width}x{height}) and {map_out}: {result.class_name} at {result.layer}, "
          f"score {result.target_score:.4g}" + (f", region {result.region}" if result.region else "") if ok
          else "segmentation screenshot: could not save")
    return 0 if ok else 1


def _overlay(window, rgb):
    """The overlay as the window blends it, whatever view mode is on."""
    from gradcam_desktop.core.overlay import blend

    result = window.shown_result()
    return blend(rgb, result.display, window.ui.alpha_slider.value() / 100.0, window.ui.colormap_box.currentText())


if __name__ == "__main__":
    sys.exit(main())
