"""Heads that are not classifiers (issue 20): regression values and segmentation outputs.

Every map, score and curve is checked against an independent float64 evaluation of the user's
model (tests/heads_factory.py ``HandNet``: the file's weights run by hand with TensorFlow's float64
ops, gradients by an eager tape), never against the engine's own code paths (graph.py, heads.py).
The score spaces are written here from the issue's definitions:

* value head: y = the linear unit's output z; the counterfactual map explains −y.
* segmentation head, class c over its predicted mask: y_c = Σ_{p : argmax_j z_pj = c} z_pc, the
  mask taken from the model's own softmax output; over a box: y_c = Σ_{p in box} z_pc with p in
  the box when its centre ((i + ½)/H′, (j + ½)/W′) is (heads_factory.box_cells). A one-channel
  sigmoid output z: class 1 is Σ_{z > 0} z, class 0 is Σ_{z < 0} −z.

Tolerances are running error bounds (Higham, *Accuracy and Stability*, §3.3), never fitted:
HandNet's bounds on how far the engine's float32 pass may be from ours (its docstring: γ_n of the
magnitudes each layer sums, carried through |W|), then tests/cam_reference.py's ``Bounded``
arithmetic through each method's formula. A gradient is compared only where every gate it runs
through (ReLU sign, max-pool winner, predicted class of a pixel) is farther from its decision than
those bounds (``gate_slack`` > 1, ``decided``): there no rounding can take another branch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import cam_reference
import heads_factory as hf
from cam_reference import Bounded, assert_close
from gradcam_desktop.core import trust
from gradcam_desktop.core.errors import MethodError, ModelLoadError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.layers import default_layer
from gradcam_desktop.core.models import load_model
from model_factory import float64_engine
from reference import U32, U64, gamma
from trust_reference import order_by_hand

H = W = hf.SEG_SIDE
GRID = (H, W)
SEG_SEED = 3  # a net whose picture below has all three classes (360, 400 and 264 output pixels)
#: Score-CAM's net and picture: masking the picture moves many of its class-0 pixels to class 2 (a
#: black picture is class 2 almost everywhere), so recomputing each masked picture's mask changes the
#: map by far more than its bound (test_scorecam_would_differ_with_the_pictures_mask_kept_fixed).
SCORECAM_SEED, SCORECAM_PICTURE = 0, 2
SIGMOID_SEED = 3


# -- helpers -----------------------------------------------------------------------------------------
def one_line(error: Exception) -> str:
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message, message
    return message


def decided(z: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Per pixel of (…, C) scores: the top class beats every other by more than both errors, so a
    float32 evaluation within ``error`` predicts the same class."""
    top = np.argmax(z, axis=-1)[..., None]
    lowest_top = np.take_along_axis(z - error, top, -1)
    others = np.where(np.arange(z.shape[-1]) == top, -np.inf, z + error)
    return lowest_top[..., 0] > others.max(axis=-1)


def mask_seed(z: np.ndarray, c: int) -> np.ndarray:
    """The seed (shaped like z) of y_c = Σ over the pixels predicted c (argmax of z) of z_c."""
    seed = np.zeros_like(z)
    seed[..., c] = np.argmax(z, axis=-1) == c
    return seed


def box_seed(c: int, box, sigmoid: bool) -> np.ndarray:
    cells = hf.box_cells(GRID, box)
    if sigmoid:
        return np.where(cells, 1.0 if c == 1 else -1.0, 0.0)[None, ..., None]
    seed = np.zeros((1, *GRID, hf.SEG_CLASSES))
    seed[0, ..., c] = cells
    return seed


def segmentation_case(folder, seed: int, picture_seed: int):
    """(engine, Keras model, HandNet, picture, x, z, its error) of a softmax segmentation net."""
    path, model = hf.save_segmentation(folder, seed=seed)
    engine = GradCam(load_model(str(path)))
    net = hf.HandNet(model)
    image = hf.picture(H, seed=picture_seed)
    x = hf.model_input(image)
    steps = net.forward(x)
    z, error = steps[-1].pre.numpy(), net.errors(steps)[-1].outputs
    # The model's own answer: its softmax output's argmax is our z's, at every pixel by more than rounding.
    np.testing.assert_array_equal(np.argmax(np.asarray(model(x)), -1), np.argmax(z, -1))
    assert decided(z, error).all(), "a pixel's class is within rounding of another's"
    return engine, model, net, image, x, z, error


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    return segmentation_case(tmp_path_factory.mktemp("seg"), SEG_SEED, picture_seed=1)


@pytest.fixture(scope="module")
def sigmoid_seg(tmp_path_factory):
    path, model = hf.save_segmentation(tmp_path_factory.mktemp("sigmoid"), activation="sigmoid", classes=1,
                                       seed=SIGMOID_SEED)
    engine = GradCam(load_model(str(path)))
    net = hf.HandNet(model)
    image = hf.picture(H, seed=2)
    x = hf.model_input(image)
    steps = net.forward(x)
    z, error = steps[-1].pre.numpy(), net.errors(steps)[-1].outputs
    p = np.asarray(model(x))
    np.testing.assert_array_equal(p > 0.5, z > 0)  # the model's own mask
    assert (np.abs(z) > error).all(), "a pixel's z is within rounding of 0"
    return engine, model, net, image, x, z, error


# == 1. which head =====================================================================================
@pytest.mark.parametrize("flavour, loss", [
    ("keras3", "mse"), ("keras3", "mean_absolute_error"), ("keras3", "MeanSquaredError"), ("keras3", "Huber"),
    ("keras2", "mean_squared_error"), ("keras2", "mae"), ("keras2", "MeanSquaredError")])
def test_a_regression_loss_makes_a_one_unit_linear_output_a_value(tmp_path, flavour, loss):
    if loss[0].isupper():  # a loss object, serialized by class name
        loss = getattr(hf.keras_module(flavour).losses, loss)()
    path, _model = hf.save_regression(tmp_path, flavour, loss)
    loaded = load_model(str(path))
    assert loaded.head.kind == "value" and not loaded.head.is_classifier
    assert loaded.class_names == ["age"]  # a value head's class is its output's name


@pytest.mark.parametrize("flavour, loss", [("keras3", None), ("keras2", None), ("keras3", "binary_crossentropy"),
                                           ("keras2", "BinaryCrossentropy")])
def test_without_a_regression_loss_one_linear_unit_stays_a_binary_logit(tmp_path, flavour, loss):
    if loss is not None and loss[0].isupper():
        loss = getattr(hf.keras_module(flavour).losses, loss)(from_logits=True)
    path, _model = hf.save_regression(tmp_path, flavour, loss)
    loaded = load_model(str(path))
    assert loaded.head.kind == "binary" and loaded.class_names == ["class 0", "class 1"]


@pytest.mark.parametrize("sidecar", ['{"head": "value"}', '{"head": {"age": "value"}}'])
@pytest.mark.parametrize("flavour", ["keras3", "keras2"])
def test_the_sidecar_declares_a_value_head(tmp_path, flavour, sidecar):
    path, _model = hf.save_regression(tmp_path, flavour, None, sidecar=sidecar)
    loaded = load_model(str(path))
    assert loaded.head.kind == "value" and loaded.class_names == ["age"]


def _softmax_classifier(folder, sidecar):
    import keras

    inputs = keras.Input((hf.SIDE, hf.SIDE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="last_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="kind")(x))
    model.save(folder / "kind.keras")
    (folder / "kind.gradcam.json").write_text(sidecar, encoding="utf-8")
    return folder / "kind.keras"


@pytest.mark.parametrize("case, sidecar, words", [
    ("softmax", '{"head": "value"}', "declares a value head, but the output ends in softmax"),
    ("three", '{"head": "binary"}', "binary head, but the output has 3 units"),
    ("one", '{"head": "regression"}', "must be one of softmax, logits, binary, multilabel, value, not 'regression'"),
    ("one", '{"head": 5}', '"head" must be a head kind, or head kinds by output name'),
    ("one", '{"head": ["value"]}', '"head" must be a head kind, or head kinds by output name'),
    ("one", '{"head": {"age": 1}}', '"head" must be a head kind, or head kinds by output name'),
])
def test_a_declared_head_that_does_not_fit_is_one_line(tmp_path, case, sidecar, words):
    if case == "softmax":
        path = _softmax_classifier(tmp_path, sidecar)
    else:
        path, _model = hf.save_regression(tmp_path, units=3 if case == "three" else 1, sidecar=sidecar)
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(path))
    assert words in one_line(caught.value)


def test_a_value_declared_on_one_output_of_two_names_that_output(tmp_path):
    import keras

    import core.test_outputs as two_heads  # its two-head model: kind (softmax 3) and adult (sigmoid 1)

    two_heads._build(keras).save(tmp_path / "two.keras")  # noqa: SLF001 - its builder, reused rather than repeated
    (tmp_path / "two.gradcam.json").write_text('{"head": {"adult": "value"}}', encoding="utf-8")
    loaded = load_model(str(tmp_path / "two.keras"))  # the other output is still explained
    assert loaded.output == "kind" and loaded.head.kind == "softmax"
    assert [(o.name, o.usable) for o in loaded.outputs] == [("kind", True), ("adult", False)]
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(tmp_path / "two.keras"), output="adult")
    message = one_line(caught.value)
    assert "Output 'adult'" in message and "declares a value head, but the output ends in sigmoid" in message


def test_a_segmentation_output_of_variable_size_is_refused_in_one_line(tmp_path):
    hf.segmentation_model(side=None).save(tmp_path / "any_size.keras")
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(tmp_path / "any_size.keras"))
    assert "segmentation output of variable size" in one_line(caught.value)


def test_a_softmax_over_one_channel_is_refused_in_one_line(tmp_path):
    hf.segmentation_model(classes=1, activation="softmax").save(tmp_path / "one.keras")
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(tmp_path / "one.keras"))
    assert "softmax over one channel" in one_line(caught.value)


# == 2. value heads ====================================================================================
@pytest.fixture(scope="module", params=["keras3", "keras2"])
def value(request, tmp_path_factory):
    """(engine, Keras model, HandNet) of the regression model compiled with a regression loss."""
    loss = "mse" if request.param == "keras3" else "mean_squared_error"
    path, model = hf.save_regression(tmp_path_factory.mktemp(f"value_{request.param}"), request.param, loss)
    return GradCam(load_model(str(path))), model, hf.HandNet(model)


def value_picture(seed=11):
    return hf.picture(hf.SIDE, seed)


def test_value_maps_are_the_maps_of_y_and_of_minus_y(value):
    engine, _model, net = value
    image = value_picture()
    x = hf.model_input(image)
    assert engine.default_layer == "last_conv"
    expected, y, y_error = hf.gradcam_reference(net, x, "last_conv", np.ones((1, 1)))
    against, minus_y, _ = hf.gradcam_reference(net, x, "last_conv", -np.ones((1, 1)))
    assert minus_y == -y  # −y's map: α from −g, the ReLU of the negated weighted sum

    result = engine.explain(image)  # no class: a value head's first (only) value
    assert (result.class_index, result.class_name, result.prediction.head) == (0, "age", "value")
    assert_close(result.raw, expected, what="map of y")
    assert abs(result.target_score - y) <= y_error
    assert abs(result.score - y) <= y_error  # a value head's "probability" is the value

    counterfactual = engine.explain(image, class_index=0, counterfactual=True)
    assert counterfactual.counterfactual and counterfactual.score_kind == "counterfactual"
    assert_close(counterfactual.raw, against, what="map of −y")
    assert abs(counterfactual.target_score + y) <= y_error


def test_the_prediction_is_the_models_value(value):
    engine, model, net = value
    image = value_picture(seed=12)
    x = hf.model_input(image)
    steps = net.forward(x)
    y, error = float(steps[-1].pre.numpy()[0, 0]), float(net.errors(steps)[-1].outputs[0, 0])
    keras_y = float(np.asarray(model(x, training=False))[0, 0])
    assert abs(keras_y - y) <= error  # the user's model, run by Keras, is what we evaluate by hand
    prediction = engine.predict(image)
    assert prediction.head == "value" and prediction.mask is None
    assert prediction.probabilities.shape == (1,)
    # Engine and Keras are two float32 evaluations, each within ``error`` of ours.
    assert abs(prediction.probabilities[0] - keras_y) <= 2 * error
    assert [(i, name) for i, name, _ in prediction.top] == [(0, "age")]
    assert prediction.top[0][2] == prediction.probabilities[0]


def test_several_values_keep_their_order(tmp_path):
    path, model = hf.save_regression(tmp_path, units=3, seed=4, sidecar='{"head": "value"}')
    engine = GradCam(load_model(str(path)))
    assert engine.head.kind == "value" and engine.class_names == ["age 0", "age 1", "age 2"]
    net = hf.HandNet(model)
    image = value_picture(seed=13)
    steps = net.forward(hf.model_input(image))
    y, error = steps[-1].pre.numpy()[0], net.errors(steps)[-1].outputs[0]
    # Not already in descending order (else "keeps index order" could not be told from "sorted").
    assert any(y[i] + error[i] < y[i + 1] - error[i + 1] for i in range(2)), y
    prediction = engine.predict(image)
    assert [i for i, _, _ in prediction.top] == [0, 1, 2]
    assert [name for _, name, _ in prediction.top] == ["age 0", "age 1", "age 2"]
    assert np.all(np.abs(prediction.probabilities - y) <= error)


# == 3. segmentation ===================================================================================
def test_a_segmentation_prediction_is_each_classes_share_and_the_mask(seg):
    engine, _model, _net, image, _x, z, _error = seg
    prediction = engine.predict(image)
    mask = np.argmax(z[0], axis=-1)
    counts = np.bincount(mask.ravel(), minlength=hf.SEG_CLASSES)
    assert prediction.head == "segmentation" and engine.head.kind == "segmentation"
    np.testing.assert_array_equal(prediction.mask, mask)
    # Shares are counts over H′·W′: integers divided once, exact in float64 up to one rounding.
    np.testing.assert_allclose(prediction.probabilities, counts / mask.size, rtol=2 ** -52, atol=0)
    assert [i for i, _, _ in prediction.top] == list(np.argsort(-counts, kind="stable"))
    assert (counts > 0).all(), "every class should cover some pixels of this picture"


def test_gradcam_of_a_class_is_the_map_of_its_predicted_mask_sum(seg):
    engine, _model, net, image, x, z, _error = seg
    lit = []
    for c in range(hf.SEG_CLASSES):
        expected, y, y_error = hf.gradcam_reference(net, x, "conv2", mask_seed(z, c))
        result = engine.explain(image, class_index=c)
        assert result.layer == "conv2" and result.class_index == c and result.region is None
        assert_close(result.raw, expected, what=f"class {c}", vacuous_ok=True)
        assert abs(result.target_score - y) <= y_error, (result.target_score, y, y_error)
        lit.append(bool((expected.v > 4 * expected.e).any()))
    assert all(lit), lit  # every class's map stands well above its bound somewhere: no vacuous check


BOXES = [
    (0.1, 0.2, 0.55, 0.9),
    # Sides exactly on cell centres: 8.5/32 and 20.5/32 (closed box: rows 8 … 20), columns 3 … 9.
    (8.5 / 32, 3.5 / 32, 20.5 / 32, 9.5 / 32),
    # No centre inside: the one cell under the box's centre (row and column 16).
    (0.5, 0.5, 0.51, 0.51),
    # Thinner than a column: rows 3 … 28 of column 16 (the column under the box's centre).
    (0.1, 0.5, 0.9, 0.51),
]


@pytest.mark.parametrize("box", BOXES)
def test_gradcam_of_a_box_is_the_map_of_the_class_scores_summed_over_it(seg, box):
    engine, _model, net, image, x, _z, _error = seg
    for c in (0, 2):
        expected, y, y_error = hf.gradcam_reference(net, x, "conv2", box_seed(c, box, sigmoid=False))
        result = engine.explain(image, class_index=c, region=box)
        assert result.region == pytest.approx(box, abs=0) and result.class_index == c
        assert_close(result.raw, expected, what=f"class {c} over {box}", vacuous_ok=box in BOXES[2:])
        assert abs(result.target_score - y) <= y_error, (result.target_score, y, y_error)


@pytest.mark.parametrize("score", ["versus", "counterfactual", "counterfactual over a box", "versus over a box"])
def test_the_other_scores_of_a_segmentation_class(seg, score):
    """"Rather than B" is y_c − y_B (each over its own predicted mask, or both over the box); "against"
    is −y_c: their seeds are the same linear combinations of the reference's seeds."""
    engine, _model, net, image, x, z, _error = seg
    c, other = 1, 2
    box = BOXES[0] if "box" in score else None
    one = (lambda k: box_seed(k, box, sigmoid=False)) if box else (lambda k: mask_seed(z, k))
    if score.startswith("versus"):
        seed, options = one(c) - one(other), {"versus": other}
    else:
        seed, options = -one(c), {"counterfactual": True}
    expected, y, y_error = hf.gradcam_reference(net, x, "conv2", seed)
    result = engine.explain(image, class_index=c, region=box, **options)
    assert result.score_kind == score.split()[0] and result.region == (None if box is None else pytest.approx(box))
    assert_close(result.raw, expected, what=score, vacuous_ok=False)
    assert abs(result.target_score - y) <= y_error, (result.target_score, y, y_error)


def test_box_cells_follow_the_centre_rule():
    """The reference's own rule, on the boxes above (tests the helper the region tests trust)."""
    cells = hf.box_cells(GRID, BOXES[1])
    rows, cols = np.nonzero(cells.any(axis=1))[0], np.nonzero(cells.any(axis=0))[0]
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 20, 3, 9) and cells.sum() == 13 * 7
    single = hf.box_cells(GRID, BOXES[2])
    assert single.sum() == 1 and single[16, 16]
    line = hf.box_cells(GRID, BOXES[3])
    assert line.sum() == 26 and line[3:29, 16].all()


def test_a_region_without_a_class_explains_the_most_covering_class(seg):
    engine, _model, _net, image, _x, z, _error = seg
    counts = np.bincount(np.argmax(z[0], -1).ravel(), minlength=hf.SEG_CLASSES)
    assert counts.max() > np.sort(counts)[-2]
    result = engine.explain(image, region=BOXES[0])
    assert result.class_index == int(np.argmax(counts))


def test_a_region_needs_a_segmentation_model(value):
    engine = value[0]
    with pytest.raises(MethodError) as caught:
        engine.explain(value_picture(), class_index=0, region=BOXES[0])
    assert "segmentation" in one_line(caught.value)


def scorecam_reference(net: hf.HandNet, x: np.ndarray, c: int, box=None) -> Bounded:
    """Score-CAM at conv2 in float64 (pytorch-grad-cam's recipe, cam_reference's masks): s_k is y_c of
    the masked picture x ⊙ M_k — over a fixed box, or over the pixels the masked picture's OWN
    prediction assigns to c — for the engine of the model's float64 twin.

    Why the twin: a masked picture's scores carry its mask's error through every layer, and the
    running bound of a float32 A (~1e-5 of its range) grows by |W|… to more than the gaps between
    classes at dozens of pixels. The twin's A is float64, rounded to float32 once, so the masks are
    float32 arithmetic on exact channels, as tests/core/test_method_engine.py does for methods that
    evaluate many points. Bounds: A within the float64 pass's running bound, then the cast; masks
    and x ⊙ M by cam_reference's Bounded arithmetic (float32, as MaskScorer computes them); the
    masked pass within ``errors(input_error=…, engine_u=U64)``; the engine's scores cast to float32
    (u) and summed in float32 (γ_n). A pixel whose predicted class the engine might see otherwise (c
    within both errors of the top) counts |z_c| + E_c: it is in one sum and maybe not in the other.
    """
    steps = net.forward(x)
    assert steps[2].name == "conv2"
    A = steps[2].outputs.numpy()[0]
    A_error = net.errors(steps, engine_u=U64)[2].outputs[0]
    A = Bounded(A, A_error + U32 * (np.abs(A) + A_error))  # the capture's float32 cast
    masked = [Bounded(x[0].astype(np.float64)) * Bounded(m.v[..., None], m.e[..., None])
              for m in cam_reference.scorecam_masks(A, GRID, align_corners=True)]
    values, errors = np.stack([m.v for m in masked]), np.stack([m.e for m in masked])
    masked_steps = net.forward(values)
    z = masked_steps[-1].pre.numpy()
    E = net.errors(masked_steps, input_error=errors, engine_u=U64)[-1].outputs
    E = E + U32 * (np.abs(z) + E)  # heads.Head.reduce casts the scores to float32
    zc, Ec = z[..., c], E[..., c]
    if box is not None:
        inside = hf.box_cells(GRID, box)[None]
        units = hf.SEG_CLASSES + H * W * hf.SEG_CLASSES  # the engine's float32 dot over the score space
        scores = (zc * inside).sum(axis=(1, 2))
        score_errors = (Ec * inside).sum(axis=(1, 2)) + gamma(units) * ((np.abs(zc) + Ec) * inside).sum(axis=(1, 2))
    else:
        others = np.delete(z, c, axis=-1)
        other_errors = np.delete(E, c, axis=-1)
        may_be_c = zc + Ec >= (others - other_errors).max(axis=-1)
        may_be_other = (others + other_errors).max(axis=-1) >= zc - Ec
        ambiguous = may_be_c & may_be_other
        ours = np.argmax(z, axis=-1) == c
        scores = (zc * ours).sum(axis=(1, 2))
        score_errors = ((Ec * (ours & ~ambiguous)).sum(axis=(1, 2)) + ((np.abs(zc) + Ec) * ambiguous).sum(axis=(1, 2))
                        + gamma(H * W) * ((np.abs(zc) + Ec) * (ours | ambiguous)).sum(axis=(1, 2)))
    return cam_reference.scorecam(A, Bounded(scores, score_errors))


@pytest.fixture(scope="module")
def scorecam_seg(tmp_path_factory):
    """The Score-CAM case, and the engine of its model's float64 twin (same weights and options)."""
    case = segmentation_case(tmp_path_factory.mktemp("scorecam"), SCORECAM_SEED, SCORECAM_PICTURE)
    return (float64_engine(case[0]), *case[1:])


@pytest.mark.parametrize("c, box", [(0, None), (2, None), (1, BOXES[0]), (2, BOXES[1])])
def test_scorecam_scores_the_masked_pictures_own_masks_or_the_fixed_box(scorecam_seg, c, box):
    engine64, _model, net, image, x, _z, _error = scorecam_seg
    result = engine64.explain(image, class_index=c, method="scorecam", region=box)
    assert result.method == "scorecam" and result.layer == "conv2" and result.raw.shape == (H // 2, W // 2)
    assert_close(result.raw, scorecam_reference(net, x, c, box), what=f"Score-CAM class {c}, box {box}")


def test_scorecam_would_differ_with_the_pictures_mask_kept_fixed(scorecam_seg):
    """Not vacuous: keeping the unmasked picture's mask for every masked picture (a plausible
    mistake) gives another map here, by far more than the bound somewhere."""
    _engine, _model, net, _image, x, z, _error = scorecam_seg
    own = scorecam_reference(net, x, 0)
    A = net.forward(x)[2].outputs.numpy()[0]
    masks = [m.v for m in cam_reference.scorecam_masks(Bounded(A), GRID, align_corners=True)]
    zs = net.logits(np.stack([x[0] * m[..., None] for m in masks]))
    fixed_scores = (zs[..., 0] * (np.argmax(z[0], -1) == 0)).sum(axis=(1, 2))
    weights = np.exp(fixed_scores - fixed_scores.max())
    fixed = np.maximum(A @ (weights / weights.sum()), 0.0)
    assert (np.abs(fixed - own.v) / own.e).max() > 10


@pytest.mark.parametrize("c, box", [(1, None), (2, BOXES[0])])
def test_saliency_is_the_gradient_of_the_region_score(seg, c, box):
    engine, _model, net, image, x, z, _error = seg
    x64 = tf.constant(x.astype(np.float64))
    seed = mask_seed(z, c) if box is None else box_seed(c, box, sigmoid=False)
    with tf.GradientTape() as tape:
        tape.watch(x64)
        steps = net.forward(x64)
        y = tf.reduce_sum(steps[-1].pre * seed)
    g = tape.gradient(y, x64).numpy()[0]
    bounds = net.errors(steps)
    assert net.gate_slack(steps, bounds) > 1, "a ReLU or max-pool of this picture is within rounding of its kink"
    g_hand, g_error = net.backward(steps, seed)
    np.testing.assert_allclose(g_hand[0], g, rtol=1e-12, atol=1e-14 * np.abs(g).max())
    result = engine.explain(image, class_index=c, method="saliency", region=box)
    assert result.attribution.shape == (H, W, 3) and result.raw.shape == (H, W)
    error = np.abs(result.attribution.astype(np.float64) - g)
    assert (error <= g_error[0]).all(), f"off by {(error / g_error[0]).max():.3g}× the bound"
    # The map shown: max over channels of |∂y/∂x| (|·| and max are 1-Lipschitz).
    shown = np.abs(g).max(axis=-1)
    assert (np.abs(result.raw - shown) <= g_error[0].max(axis=-1)).all()
    assert (shown > 4 * g_error[0].max(axis=-1)).any()  # not vacuous


def test_a_one_channel_sigmoid_mask_reads_as_two_classes(sigmoid_seg):
    engine, _model, net, image, x, z, _error = sigmoid_seg
    assert engine.head.kind == "segmentation" and engine.class_names == ["class 0", "class 1"]
    positive = z[0, ..., 0] > 0
    prediction = engine.predict(image)
    np.testing.assert_array_equal(prediction.mask, positive.astype(np.int32))
    assert 0 < positive.sum() < positive.size
    np.testing.assert_allclose(prediction.probabilities, [1 - positive.mean(), positive.mean()], rtol=2 ** -52)
    assert engine.default_layer == "conv2"
    for c in (0, 1):
        # Class 1: Σ z over z > 0; class 0: Σ −z over z < 0 (written out, not through mask_seed).
        seed = np.where(positive, 1.0, 0.0) if c == 1 else np.where(~positive, -1.0, 0.0)
        expected, y, y_error = hf.gradcam_reference(net, x, "conv2", seed[None, ..., None])
        assert y > 0  # both sums are of positive terms
        result = engine.explain(image, class_index=c)
        assert_close(result.raw, expected, what=f"sigmoid class {c}", vacuous_ok=True)
        assert abs(result.target_score - y) <= y_error
        boxed, y_box, box_error = hf.gradcam_reference(net, x, "conv2", box_seed(c, BOXES[0], sigmoid=True))
        in_box = engine.explain(image, class_index=c, region=BOXES[0])
        assert_close(in_box.raw, boxed, what=f"sigmoid class {c} in a box", vacuous_ok=True)
        assert abs(in_box.target_score - y_box) <= box_error


# == 4. trust on a value head ==========================================================================
def test_value_trust_curves_are_the_value_relative_to_the_blurred_picture(value):
    engine, model, net = value
    image = value_picture(seed=14)
    result = engine.explain(image)
    saliency = result.raw
    assert saliency.shape == (hf.SIDE, hf.SIDE)  # last_conv is at input resolution: no upsampling
    report = trust.trust_report(engine, image, result, sanity=False)

    picture = hf.model_input(image)[0]
    order = np.array(order_by_hand(saliency))
    deletion = np.stack(list(trust.deletion_inputs(picture, order)))
    insertion = np.stack(list(trust.insertion_inputs(picture, order)))
    mask = saliency / saliency.max()
    masked = (picture * mask[..., None])[None]  # X ⊙ M as the definitions build it, in float32

    def y_of(batch):
        """The user's Keras model's values, and a bound on |engine's − these|: each is a float32
        evaluation within HandNet's running bound of the float64 value."""
        values = np.asarray(model(batch, training=False), np.float64)[:, 0]
        steps = net.forward(batch)
        ours, error = steps[-1].pre.numpy()[:, 0], net.errors(steps)[-1].outputs[:, 0]
        assert np.all(np.abs(values - ours) <= error)
        return Bounded(values, 2 * error)

    y_deletion, y_insertion, y_masked = y_of(deletion), y_of(insertion), y_of(masked)
    blurred, original = y_insertion[0], y_deletion[0]
    scale = original - blurred
    assert abs(scale.v) > 100 * scale.e, "the blur barely changes the value: the rescaling would be ill-conditioned"
    for name, curve, ys in (("deletion", report.deletion_curve, y_deletion),
                            ("insertion", report.insertion_curve, y_insertion)):
        expected = (ys - blurred) / scale
        assert len(curve) == trust.STEPS + 1
        error = np.abs(np.asarray(curve) - expected.v)
        assert (error <= expected.e).all(), f"{name}: off by {(error / expected.e).max():.3g}× the bound"
        assert np.ptp(expected.v) > 100 * expected.e.max()  # the curve moves far more than its bound
    assert report.original == 1.0 and report.insertion_curve[0] == 0.0
    expected_masked = (y_masked - blurred) / scale
    assert abs(report.masked - expected_masked.v[0]) <= expected_masked.e[0]

    # "Against" (−y) reads the same value: the same curves.
    against = engine.explain(image, class_index=0, counterfactual=True).with_(raw=saliency)
    again = trust.trust_report(engine, image, against, sanity=False)
    np.testing.assert_array_equal(again.deletion_curve, report.deletion_curve)
    np.testing.assert_array_equal(again.insertion_curve, report.insertion_curve)


def test_the_sanity_check_of_a_value_head_explains_the_value(value):
    engine, _model, net = value
    image = value_picture(seed=15)
    original = engine.explain(image, class_index=0)
    copy = trust.randomized_copy(engine)
    copy.reset()  # nothing re-drawn: the copy is the user's model, so its map is the original map
    again = copy.explain(image, class_index=0)
    assert copy.engine.head.kind == "value" and again.class_name == "age"
    # The same float32 computation on the same weights (a clone): equal up to the order of its sums,
    # far below the map's own bound (test_value_maps_are_the_maps_of_y_and_of_minus_y).
    expected, _, _ = hf.gradcam_reference(net, hf.model_input(image), "last_conv", np.ones((1, 1)))
    assert_close(again.raw, expected, what="the sanity copy's map")
    report = trust.trust_report(engine, image, original, sanity_steps=3)  # `gradcam trust` runs the sanity check
    assert [step.randomized for step in report.sanity] == [["age"], ["age", "last_conv"], ["age", "last_conv", "conv"]]


# == 5. the default layer ==============================================================================
def test_the_default_layer_of_a_segmentation_net_is_before_its_per_pixel_classifier(seg, sigmoid_seg):
    for engine, model in ((seg[0], seg[1]), (sigmoid_seg[0], sigmoid_seg[1])):
        # The last spatial layer would be the classifier itself (its output is the per-pixel logits),
        # then the upsampling of conv2: the map is taken where the features are, at conv2.
        assert default_layer(model) == "classifier"
        assert default_layer(model, per_pixel_output=True) == "conv2"
        assert engine.default_layer == "conv2"


def test_the_record_says_the_head_and_the_region(seg):
    """The record (``--json``) says which head and which region."""
    engine, *_ = seg
    record = engine.explain(seg[3], class_index=1, region=BOXES[0]).record()
    assert record["head"] == "segmentation" and record["region"] == [round(v, 6) for v in BOXES[0]]
    json.dumps(record)  # plain JSON
