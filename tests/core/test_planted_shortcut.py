"""Issue 19's "Done when": on a model trained here with a planted shortcut, SpRAy (core/patterns.py run
by core/folder_patterns.py) puts the marked pictures of the class in a cluster of their own, whose
mean map sits on the marker, and does so again for the same seed.

The planted setting, a Clever Hans in miniature (Lapuschkin et al., 2019, the horses with a copyright
watermark). 48 × 48 RGB pictures of a disk on a noisy background; the classes differ by the disk's
texture: stripes across (class 0) or down (class 1). In 30 % of class 0's training pictures a 7 × 7
magenta marker sits in the top-left corner, never in class 1's. A marker a model merely tolerates is
no shortcut, and SpRAy cannot see one that carries little of the maps: the settings below are the
ones that made the model lean on it in every one of 12 training seeds tried (12 epochs each, 10 to
20 s on this 2-core CPU), found as follows:

* 20 % of the *unmarked* training pictures carry the other class's label, as real data sets carry
  label noise: the texture is then an 80 % cue, the marker a 100 % one, so the loss keeps rewarding
  the marker after the texture is learned. With clean labels (5 × 5 marker, 3 seeds) the stripes were learned
  at once and the marker got 8 % to 26 % of a marked picture's map; with 10 % wrong labels (7 × 7),
  2 seeds of 10 gave it 11 % to 22 % — and then SpRAy's eigengap chose one cluster for all 36 maps,
  or split them by the disk's position;
* a 7 × 7 marker: at 5 × 5, even with 20 % wrong labels, 2 seeds of 6 never picked it up (a rise of
  0.2 logits, 5 % to 9 % of the map);
* 30 % marked rather than 40 %: at 40 %, 1 seed of 10 leaned on the marker alone and barely learned
  the texture (28 % of unmarked class 0 pictures right).

So trained, the model classifies unmarked pictures of both classes right (91 % to 100 % a class over
the 12 seeds), the marker turns class 1 pictures into class 0 (their margin rises by 3.2 to 7.7 logits
on average), and Grad-CAM at the last convolution puts 25 % to 60 % of a marked picture's map on the
marker's cells, next to nothing of an unmarked one's.

The held-out folder: 35 unmarked and 7 marked class 0 pictures. SpRAy's k-NN graph links each map to
k = round(√N) others (6 for 42 maps), so a group of more than k alike maps can be a component of its
own, and 7 marked maps are. A group of k or fewer must link to maps outside it, and then the rules
of core/patterns.py did not always see it, however much of each map the marker held: for the seed 0
model, 6 marked among 36 (k = 6) were found in 20 draws of 20 but with λ₁ = 0.006 to 0.013, at the
eigengap's floor of 0.01; for another training seed's model in 14 of 20 (one cluster of all 36 in
the rest, λ₁ up to 0.027); 4 marked among 34 (k = 6) were one cluster with the rest in 28 draws of
30, with 43 % to 66 % of each marked map on the marker. 7 among 42: found in 20 of 20 draws for each
of the 3 models tried (training seeds 0, 10, 11), λ₁ = 0 in nearly all.

Determinism: ``keras.utils.set_random_seed`` and NumPy generators with fixed seeds; training gave
bit-identical weights run after run on this machine. ``tf.config.experimental.enable_op_determinism``
is not used: it cannot be turned off again and would change the rest of the test session (random
ops without a seed raise under it).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from gradcam_desktop.core import cams, patterns
from gradcam_desktop.core.folder_patterns import PatternsRun
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.triage import LabelledPicture

SIDE = 48
LAYER = "last_conv"
#: The marker: a 7 × 7 magenta square, pixels [MARK_FROM, MARK_TO) in rows and columns.
MARK_FROM, MARK_TO = 3, 10
MAGENTA = (255, 0, 255)
#: The disk: centre 20..28 (rows and columns), radius 7..9, so it never comes nearer the corner than
#: pixel 11 and never touches the marker.
CENTRE_FROM, CENTRE_TO, RADIUS_FROM, RADIUS_TO = 20, 29, 7, 10
#: Training: pictures per class, class 0's share with the marker, unmarked pictures' share of wrong labels.
TRAIN_PER_CLASS, MARKED_SHARE, WRONG_LABELS, EPOCHS = 400, 0.3, 0.2, 12
#: Held out, all labelled class 0: every 6th picture marked (35 unmarked + 7 marked, interleaved).
HELD_OUT, MARKED_EVERY = 42, 6


def picture(rng: np.random.Generator, cls: int, marked: bool) -> np.ndarray:
    """One RGB uint8 picture: a striped disk (across: class 0, down: class 1) on noise, with the marker if ``marked``."""
    rgb = rng.integers(40, 120, (SIDE, SIDE, 3)).astype(np.uint8)
    bright = np.array([int(v) for v in rng.integers(150, 256, 3)])
    cy, cx = (int(v) for v in rng.integers(CENTRE_FROM, CENTRE_TO, 2))
    radius = int(rng.integers(RADIUS_FROM, RADIUS_TO))
    yy, xx = np.mgrid[:SIDE, :SIDE]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
    stripes = ((yy if cls == 0 else xx) // 2) % 2 == 0  # 2-pixel stripes
    rgb[disk & stripes] = bright
    rgb[disk & ~stripes] = np.maximum(bright - 120, 0)
    if marked:
        rgb[MARK_FROM:MARK_TO, MARK_FROM:MARK_TO] = MAGENTA
    return rgb


def model_input(pictures: list[np.ndarray]) -> np.ndarray:
    """The model's input for RGB pictures: preprocessing "unit" (x / 255), as the saved model's settings say."""
    return np.stack(pictures).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def planted_model(tmp_path_factory) -> Path:
    """Train the model with the planted shortcut (module docstring) and save it as the app opens models."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    pictures, labels = [], []
    for _ in range(TRAIN_PER_CLASS):
        for cls in (0, 1):
            marked = cls == 0 and rng.random() < MARKED_SHARE
            pictures.append(picture(rng, cls, marked))
            wrong = not marked and rng.random() < WRONG_LABELS  # a marked picture's label is always right
            labels.append(1 - cls if wrong else cls)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name=LAYER)(x)  # 24 × 24
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(model_input(pictures), np.array(labels), batch_size=32, epochs=EPOCHS, shuffle=True, verbose=0)
    folder = tmp_path_factory.mktemp("planted_model")
    path = folder / "stripes.keras"
    model.save(path)
    (folder / "stripes.labels.txt").write_text("across\ndown\n", encoding="utf-8")
    (folder / "stripes.gradcam.json").write_text('{"preprocess": "unit"}', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def engine(planted_model) -> GradCam:
    return GradCam(load_model(str(planted_model)))


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> tuple[list[LabelledPicture], np.ndarray]:
    """(class 0 pictures never trained on, as PNG files; which of them are marked)."""
    folder = tmp_path_factory.mktemp("planted_held_out")
    rng = np.random.default_rng(1234)
    pictures, marked = [], []
    for i in range(HELD_OUT):
        mark = i % MARKED_EVERY == 2
        path = folder / f"across{i:02d}.png"
        cv2.imwrite(str(path), picture(rng, 0, mark)[:, :, ::-1])  # OpenCV writes BGR
        pictures.append(LabelledPicture(str(path), 0))
        marked.append(mark)
    return pictures, np.array(marked)


def analyse(engine: GradCam, pictures: list[LabelledPicture], seed: int = 0):
    run = PatternsRun(engine, pictures, method=cams.method("gradcam"), layer=LAYER, by="true", seed=seed)
    while run.step():
        pass
    return run.finish()


@pytest.fixture(scope="module")
def analysis(engine, held_out):
    return analyse(engine, held_out[0])


def marker_cells() -> slice:
    """The grid cells (rows and columns alike) of the marker's pixels, widened by one cell on each side for
    the blur of the map's resampling (24 × 24 feature map → 32 × 32 grid; pixel p is grid cell p·32/48)."""
    scale = patterns.GRID / SIDE
    first, last = math.floor(MARK_FROM * scale), math.ceil(MARK_TO * scale) - 1  # 2 and 6
    return slice(max(first - 1, 0), min(last + 1, patterns.GRID - 1) + 1)


def test_the_model_learned_the_texture_and_leans_on_the_marker(engine):
    rng = np.random.default_rng(99)
    across = [picture(rng, 0, False) for _ in range(16)]
    down = [picture(rng, 1, False) for _ in range(16)]
    unmarked = engine.logits(model_input(across + down)).argmax(axis=1)
    # The texture is learned: unmarked pictures of both classes are classified right (seen: all 32; 91 %
    # to 100 % a class over 12 training seeds; 90 % of the 32 leaves room for a few near the boundary).
    assert np.mean(unmarked == [0] * 16 + [1] * 16) >= 0.9
    # The shortcut: the marker pasted on class 1 pictures raises class 0's margin (logit 0 − logit 1) on
    # every one of them, and on average by at least 1 logit (the odds of class 0 times e). Seen: 4.8 to
    # 5.1, all 16 then called class 0; 3.2 to 7.7 on average over 12 training seeds.
    marked = [rgb.copy() for rgb in down]
    for rgb in marked:
        rgb[MARK_FROM:MARK_TO, MARK_FROM:MARK_TO] = MAGENTA
    before, after = engine.logits(model_input(down)), engine.logits(model_input(marked))
    rise = (after[:, 0] - after[:, 1]) - (before[:, 0] - before[:, 1])
    assert np.all(rise > 0) and rise.mean() >= 1.0, rise


def marked_cluster(analysis, marked: np.ndarray) -> tuple[patterns.Clustering, int]:
    """Class 0's clustering and the cluster that holds the most marked pictures."""
    clustering = analysis.clusterings[0]
    assert len(clustering.labels) == len(marked)  # by="true": every picture is clustered as class 0
    return clustering, int(np.bincount(clustering.labels[marked]).argmax())


def test_the_marked_pictures_are_their_own_cluster(analysis, held_out):
    pictures, marked = held_out
    assert [item.image for item in analysis.done] == [p.path for p in pictures]  # all mapped, in order
    clustering, cluster = marked_cluster(analysis, marked)
    members = clustering.labels == cluster
    # "Their own cluster, with high purity": at most one of the 7 marked pictures strays elsewhere, and
    # at least 80 % of the cluster's members are marked (6 of 7, or 7 of 8: one unmarked intruder at most).
    # Seen: the 7 marked and nothing else, against one cluster of the 35 unmarked.
    assert members[marked].sum() >= int(marked.sum()) - 1
    assert members[marked].sum() / members.sum() >= 0.8
    # And flagged as the issue asks ("small clusters far from the rest"): with 42 maps, at most
    # 0.2 · 42 = 8.4 members counts as small, so the one intruder allowed above still fits.
    assert cluster in clustering.outlier_clusters


def test_its_mean_map_sits_on_the_marker(analysis, held_out):
    _pictures, marked = held_out
    clustering, cluster = marked_cluster(analysis, marked)
    means = patterns.mean_maps(analysis.features[analysis.class_rows(0)], clustering.labels)
    region = marker_cells()
    on_marker = {c: float(m[region, region].sum()) for c, m in means.items()}
    for c, mean in means.items():
        peak = np.unravel_index(int(np.argmax(mean)), mean.shape)
        inside = all(region.start <= p < region.stop for p in peak)
        # The marked cluster's mean map peaks on the marker (seen: cell (4, 4), the marker being cells
        # 2..6); every other cluster's peaks elsewhere, on the disks (seen: (17, 16)).
        assert inside == (c == cluster), (c, peak, region)
    # And more of its mass lies there than of any other cluster's (seen: 0.61 against 0.00).
    assert all(on_marker[cluster] > share for c, share in on_marker.items() if c != cluster), on_marker


def test_the_clustering_is_repeatable_for_a_seed(analysis, engine, held_out):
    again = analyse(engine, held_out[0], seed=0)  # the folder mapped and clustered again
    assert np.array_equal(again.clusterings[0].labels, analysis.clusterings[0].labels)
    # spray twice on the same features: the run's own call (by_class gives it exactly these rows, every
    # picture being class 0) and this one.
    features = analysis.features[analysis.class_rows(0)]
    assert np.array_equal(patterns.spray(features, seed=0).labels, analysis.clusterings[0].labels)
