"""Train the built-in offline demo model on synthetic shapes (gradcam_desktop.core.demo_data).

Writes resources/demo_model.keras and its label sidecar resources/demo_model.labels.txt, then
prints validation accuracy and a private Grad-CAM localisation check: the fraction of fresh
images whose map peaks inside the (dilated) object mask.

    python tools/train_demo.py                 # full run (a few minutes on 2 CPU cores)
    python tools/train_demo.py --train 2000 --epochs 1 --out /tmp/demo   # smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gradcam_desktop.core import demo_data  # noqa: E402

SEED = 1234
TRAIN_SEED, VAL_SEED, LOC_SEED = 1, 2, 3  # the test uses other seeds, never these
SIZE = 128
LOC_DILATE = 3  # px tolerance around the mask for "peak is on the object"


def build_model(n_classes: int, *, export: bool = False):
    """Small conv net whose last conv layer ("last_conv") runs at 16×16 for useful maps.

    For training the last block is Conv → BatchNorm → ReLU like the others: a bare ReLU conv
    there died within the first epoch and left the net at chance level.  The ``export``
    variant has a single ``last_conv`` (Conv2D + bias + ReLU) into which that BatchNorm is
    folded (``fold_last_bn``), so the layer users see first in the app is the rectified map
    Grad-CAM should look at.
    """
    import keras
    from keras import layers

    def block(x, filters: int, name: str, pool: bool, kernel: int = 3, strides: int = 1):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                          name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        x = layers.ReLU(name=f"{name}_relu")(x)
        if pool:
            x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        return x

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    # Rescaling inside the model: the app's preprocessing "auto" resolves to "raw" (0..255 in).
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    # Strided 5×5 stem: full-resolution 3×3 convs cost ~25 % more time for no accuracy gain.
    x = block(x, 16, "block1", pool=False, kernel=5, strides=2)  # 64×64
    x = block(x, 32, "block2", pool=True)    # 32×32
    x = block(x, 64, "block3", pool=True)    # 16×16
    x = block(x, 96, "block4", pool=False)   # 16×16: grows the receptive field, keeps resolution
    if export:
        x = layers.Conv2D(96, 3, padding="same", activation="relu", name="last_conv")(x)
    else:
        x = block(x, 96, "last", pool=False)  # last_conv → last_bn → last_relu
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="demo_shapes")


def fold_last_bn(trained, exported) -> None:
    """Copy weights into the export model, folding last_bn into last_conv (exact at inference)."""
    for layer in exported.layers:
        if layer.name != "last_conv" and layer.weights:
            layer.set_weights(trained.get_layer(layer.name).get_weights())
    (kernel,) = trained.get_layer("last_conv").get_weights()
    gamma, beta, mean, var = trained.get_layer("last_bn").get_weights()
    eps = trained.get_layer("last_bn").epsilon
    scale = gamma / np.sqrt(var + eps)
    exported.get_layer("last_conv").set_weights([kernel * scale, beta - mean * scale])


def _dataset_chunk(args: tuple[int, int, tuple[float, float]]):
    n, seed, clutter = args
    return demo_data.make_dataset(n, seed, SIZE, clutter=clutter)


def generate(n: int, seed: int, clutter: tuple[float, float], workers: int = 2):
    """make_dataset in parallel chunks (deterministic: chunk i uses seed*1000+i)."""
    from concurrent.futures import ProcessPoolExecutor

    chunk = 1000
    jobs = [(min(chunk, n - i), seed * 1000 + i // chunk, clutter) for i in range(0, n, chunk)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_dataset_chunk, jobs))
    return tuple(np.concatenate(p) for p in zip(*parts))


def dihedral(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rotation by k·90° and optional flip per image: all four classes are invariant."""
    out = np.empty_like(x)
    t = rng.integers(0, 8, len(x))
    for k in range(8):
        idx = np.flatnonzero(t == k)
        part = np.rot90(x[idx], k % 4, axes=(1, 2))
        out[idx] = part[:, :, ::-1] if k >= 4 else part
    return out


def gradcam_peaks(model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Private Grad-CAM (independent of the app's engine): (N, 2) peak (y, x) in image pixels."""
    import cv2
    import keras
    import tensorflow as tf

    head = model.get_layer("predictions")
    probe = keras.Model(model.inputs, model.get_layer("last_conv").output)
    peaks = np.empty((len(images), 2), np.int64)
    for start in range(0, len(images), 50):
        x = tf.constant(images[start:start + 50], tf.float32)
        k = tf.constant(classes[start:start + 50])
        with tf.GradientTape() as tape:
            a = probe(x, training=False)
            tape.watch(a)
            # Pre-softmax logits (GAP features @ kernel + bias): the softmax saturates and
            # flattens gradients for confident predictions.
            z = tf.matmul(tf.reduce_mean(a, axis=(1, 2)), head.kernel) + head.bias
            score = tf.reduce_sum(tf.gather(z, k, axis=1, batch_dims=1))
        g = tape.gradient(score, a)
        w = tf.reduce_mean(g, axis=(1, 2), keepdims=True)
        cams = tf.nn.relu(tf.reduce_sum(w * a, axis=-1)).numpy()
        for i, cam in enumerate(cams):
            up = cv2.resize(cam, (images.shape[2], images.shape[1]), interpolation=cv2.INTER_LINEAR)
            peaks[start + i] = np.unravel_index(int(np.argmax(up)), up.shape)
    return peaks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=14000, help="training images at full clutter")
    ap.add_argument("--easy", type=int, default=4000, help="extra training images at lower clutter")
    ap.add_argument("--val", type=int, default=2000, help="validation images")
    ap.add_argument("--loc", type=int, default=200, help="images for the localisation check")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1.5e-3, help="peak learning rate")
    ap.add_argument("--out", type=Path, default=REPO / "resources", help="output folder")
    args = ap.parse_args(argv)

    t0 = time.time()
    # Generated before TensorFlow is imported, so the worker processes fork a light parent.
    # The easy part is a curriculum: on full clutter alone the net needs far longer to start
    # learning at all.
    x_full, y_full, _ = generate(args.train, TRAIN_SEED, (1.0, 1.0))
    x_easy, y_easy, _ = generate(args.easy, TRAIN_SEED + 100, (0.0, 0.8)) if args.easy else (
        x_full[:0], y_full[:0], None)
    x_train = np.concatenate([x_full, x_easy])
    y_train = np.concatenate([y_full, y_easy])
    del x_full, x_easy
    x_val, y_val, _ = generate(args.val, VAL_SEED, (1.0, 1.0))
    print(f"data: {len(x_train)} train / {len(x_val)} val in {time.time() - t0:.0f} s", flush=True)

    import keras

    keras.utils.set_random_seed(SEED)  # seeds Python, NumPy and TensorFlow
    aug_rng = np.random.default_rng(SEED)
    n_classes = len(demo_data.CLASS_NAMES)
    model = build_model(n_classes)
    steps_per_epoch = int(np.ceil(len(x_train) / args.batch))
    steps = args.epochs * steps_per_epoch
    warmup = min(300, steps // 5)
    schedule = keras.optimizers.schedules.CosineDecay(
        1e-4, steps - warmup, alpha=0.02, warmup_target=args.lr, warmup_steps=warmup)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t1 = time.time()
    for epoch in range(args.epochs):
        # Fresh dihedral augmentation each epoch (cheap, and the classes are invariant to it).
        model.fit(dihedral(x_train, aug_rng), y_train, batch_size=args.batch, shuffle=True,
                  initial_epoch=epoch, epochs=epoch + 1, validation_data=(x_val, y_val), verbose=2)
    print(f"training: {time.time() - t1:.0f} s", flush=True)

    # Export: BN folded into last_conv, no optimizer state (the app loads with compile=False).
    exported = build_model(n_classes, export=True)
    fold_last_bn(model, exported)
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "demo_model.keras"
    exported.save(model_path)
    # Sidecar read by models.load_model: "<model stem>.labels.txt", one class per line.
    (args.out / "demo_model.labels.txt").write_text("\n".join(demo_data.CLASS_NAMES) + "\n",
                                                    encoding="utf-8")
    stale = args.out / "demo_labels.txt"  # an older name; only the sidecar is read
    if stale.exists():
        stale.unlink()

    # Every check below runs on the file as shipped, reloaded like the app does.
    shipped = keras.models.load_model(model_path, compile=False)
    probs = shipped.predict(x_val, batch_size=256, verbose=0)
    val_acc = float(np.mean(probs.argmax(1) == y_val))
    fold_err = float(np.abs(probs[:256] - model.predict(x_val[:256], verbose=0)).max())

    # Localisation on fresh images, explaining the true class.
    x_loc, y_loc, m_loc = demo_data.make_dataset(args.loc, LOC_SEED, SIZE)
    peaks = gradcam_peaks(shipped, x_loc, y_loc)
    hits = [demo_data.dilate_mask(m, LOC_DILATE)[py, px] for m, (py, px) in zip(m_loc, peaks)]
    loc_rate = float(np.mean(hits))
    loc_acc = float(np.mean(shipped.predict(x_loc, batch_size=256, verbose=0).argmax(1) == y_loc))

    print(f"BN folding: max probability difference {fold_err:.2e}")
    print(f"validation accuracy: {val_acc:.4f} ({len(y_val)} images)")
    print(f"fresh-image accuracy: {loc_acc:.4f} ({len(y_loc)} images)")
    print(f"Grad-CAM peak inside {LOC_DILATE}px-dilated mask: {loc_rate:.4f} ({len(y_loc)} images)")
    print(f"saved {model_path} ({model_path.stat().st_size / 1024:.0f} KiB), total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
