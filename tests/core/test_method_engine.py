"""Every method through the engine on small Keras models, against float64 references written
from issue 7's formulas (tests/cam_reference.py): A, g and logits from an eager float64
GradientTape (tests/reference.py), Score-CAM's masked passes run eagerly in float64.

Gradient methods at inner layers are compared on the model's float64 twin (their gradients cross
ReLU kinks, see tests/reference.py); at last_conv (GAP → Dense: exact gradient) in float32.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import cam_reference as ref
from cam_reference import Bounded, assert_close
from gradcam_desktop.core import scorecam
from gradcam_desktop.core.errors import MethodError
from gradcam_desktop.core.gradcam import GradCam
from model_factory import flat_gap_dense_model, float64_engine, random_image, save_and_load
from reference import OPS_PER_LAYER, U32, capture, discrepancy, exact_gradient, gamma

MAP_METHODS = ref.GRADIENT_METHODS + ("eigencam",)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    engine = GradCam(save_and_load(flat_gap_dense_model(classes=4, seed=31), tmp_path_factory.mktemp("m")))
    return engine, float64_engine(engine)


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    model = flat_gap_dense_model(classes=1, activation="sigmoid", seed=32)
    return float64_engine(GradCam(save_and_load(model, tmp_path_factory.mktemp("b"))))


def model_input(image) -> np.ndarray:
    """The engine's input for a picture of the model's exact size with "unit" preprocessing."""
    return image.rgb.astype(np.float32)[None] / np.float32(255.0)


def _run(model, layer):
    """(A at ``layer``, pre-softmax logits) of the flat Sequential model, layer by layer, eagerly."""
    dense = model.get_layer("predictions")

    def features_and_logits(x):
        y = features = x
        for each in model.layers[:-1]:
            y = each(y)
            features = y if each.name == layer else features
        return features, keras.ops.matmul(y, dense.kernel) + dense.bias
    return features_and_logits


def _rhos(engine, layer):
    rho = discrepancy(engine.model)
    exact = layer == "last_conv" and engine.model.get_layer(layer).compute_dtype == "float32"
    return rho, (exact_gradient() if exact else rho)


def logit_errors(engine, logits):
    """|Δz| between the engine's float32 logits and ours: the pass error model of tests/reference.py."""
    z = np.abs(logits)
    return (discrepancy(engine.model) + U32) * (z + z.mean())


def top_class(engine, logits) -> int:
    """The float64 top class, refusing pictures where rounding could reorder the top two."""
    error = logit_errors(engine, logits)
    first, second = np.argsort(-logits)[:2]
    assert logits[first] - error[first] > logits[second] + error[second], "top class not decided"
    return int(first)


def expected_map(engine, image, layer, weights, method):
    """The reference map of ``method`` for score Σ weights·logits, and the float64 logits."""
    A, g, logits = capture(_run(engine.model, layer), model_input(image), weights)
    A_bounded, g_bounded = ref.inputs(A, g, *_rhos(engine, layer))
    if method == "eigencam":
        result = ref.eigencam(A, A_bounded.e)
        assert ref.sign_decided(A, result)
        return result, logits
    relu = engine.model.get_layer(layer).activation.__name__ == "relu"
    return ref.gradient_map(method, A_bounded, g_bounded, nonnegative=relu), logits


def assert_score(engine, result, weights, logits):
    """target_score = Σ w·z within the logits' error (the engine adds in float64)."""
    w = np.asarray(weights, np.float64)
    assert abs(result.target_score - w @ logits) <= np.abs(w) @ logit_errors(engine, logits) + gamma(len(w)) * (
        np.abs(w) @ np.abs(logits))


# -- every method, every score ---------------------------------------------------------------------
@pytest.mark.parametrize("method", MAP_METHODS)
@pytest.mark.parametrize("where", [("float64", "conv2"), ("float32", "last_conv")])
def test_each_method_matches_the_reference(engines, method, where):
    engine = engines[1] if where[0] == "float64" else engines[0]
    image = random_image(seed=33)
    for cls in range(4):
        expected, logits = expected_map(engine, image, where[1], np.eye(4)[cls], method)
        result = engine.explain(image, where[1], cls, method)
        assert (result.method, result.class_index, result.layer, result.layers) == (method, cls, where[1], ())
        assert result.score_kind == "class" and result.versus_index is None and not result.counterfactual
        assert_close(result.raw, expected, what=f"{method} class {cls}", vacuous_ok=method != "eigencam")
        assert_score(engine, result, np.eye(4)[cls], logits)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "xgradcam"])
def test_versus_and_counterfactual_change_the_score_as_defined(engines, method):
    engine = engines[1]
    image = random_image(seed=34)
    e = np.eye(4)
    cases = [  # (explain kwargs, score vector, score kind)
        (dict(class_index=2, versus=0), e[2] - e[0], "versus"),
        (dict(class_index=0, versus=3), e[0] - e[3], "versus"),
        (dict(class_index=1, counterfactual=True), -e[1], "counterfactual"),
        (dict(class_index=3, counterfactual=True), -e[3], "counterfactual"),
    ]
    informative = 0
    for kwargs, weights, kind in cases:
        expected, logits = expected_map(engine, image, "conv2", weights, method)
        result = engine.explain(image, "conv2", method=method, **kwargs)
        assert_close(result.raw, expected, what=f"{method} {kwargs}", vacuous_ok=True)
        informative += bool((expected.v > 4 * expected.e).any())
        assert result.score_kind == kind and result.class_index == kwargs["class_index"]
        assert result.versus_index == kwargs.get("versus") and result.counterfactual == (kind == "counterfactual")
        assert result.versus_name == (None if kind != "versus" else engine.class_names[kwargs["versus"]])
        assert_score(engine, result, weights, logits)
        record = result.record()
        assert (record["score_kind"], record["versus_index"]) == (kind, kwargs.get("versus"))
        assert record["explained_score"] == pytest.approx(result.target_score)
    assert informative >= 2


@pytest.mark.parametrize("method", ["gradcam", "layercam", "eigencam"])
def test_versus_and_counterfactual_of_the_top_class_left_unset(engines, method):
    engine = engines[1]
    pictures = [random_image(seed=35), random_image(seed=36)]
    tops = [top_class(engine, capture(_run(engine.model, "conv2"), model_input(p), np.zeros(4))[2])
            for p in pictures]
    other = min(set(range(4)) - set(tops))
    batched = engine.explain_many(pictures, "conv2", None, method, versus=other)
    informative = 0
    for picture, top, many in zip(pictures, tops, batched):
        for kind, weights in (("versus", np.eye(4)[top] - np.eye(4)[other]), ("counterfactual", -np.eye(4)[top])):
            expected, logits = expected_map(engine, picture, "conv2", weights, method)
            options = dict(versus=other) if kind == "versus" else dict(counterfactual=True)
            result = engine.explain(picture, "conv2", None, method, **options)
            assert (result.class_index, result.score_kind) == (top, kind)
            assert_close(result.raw, expected, what=f"{method} {kind}", vacuous_ok=True)
            informative += bool((expected.v > 4 * expected.e).any())
            assert_score(engine, result, weights, logits)
            if kind == "versus":
                assert (many.class_index, many.versus_index) == (top, other)
                assert_close(many.raw, expected, what=f"{method} {kind}, batched", vacuous_ok=True)
        with pytest.raises(MethodError):  # the top class versus itself
            engine.explain(picture, "conv2", None, method, versus=top)
    assert informative >= 2


def test_binary_head_class_one_is_z_and_class_zero_is_minus_z(binary):
    image = random_image(seed=37)
    cases = [  # (class, versus, counterfactual) -> the multiple of z explained
        ((1, None, False), 1.0), ((0, None, False), -1.0), ((1, 0, False), 2.0), ((0, 1, False), -2.0),
        ((0, None, True), 1.0), ((1, None, True), -1.0),
    ]
    for (cls, versus, counterfactual), multiple in cases:
        for method in ("gradcam", "hirescam", "layercam"):
            expected, logits = expected_map(binary, image, "conv2", [multiple], method)
            result = binary.explain(image, "conv2", cls, method, versus=versus, counterfactual=counterfactual)
            assert_close(result.raw, expected, what=f"{method} {cls} {versus} {counterfactual}", vacuous_ok=True)
            assert_score(binary, result, [multiple], logits)


def test_wrong_combinations_are_one_line_method_errors(engines):
    engine, image = engines[0], random_image(seed=38)
    for kwargs in (dict(class_index=1, versus=1), dict(class_index=1, versus=2, counterfactual=True),
                   dict(class_index=1, method="scorecam", max_channels=0), dict(class_index=1, method="gradcm")):
        with pytest.raises(MethodError) as info:
            engine.explain(image, "last_conv", **kwargs)
        assert "\n" not in str(info.value)


# -- several layers, several pictures, the capture cache -------------------------------------------
@pytest.mark.parametrize("method", ["layercam", "gradcam", "eigencam"])
def test_fused_layers_follow_pytorch_grad_cam(engines, method):
    engine = engines[1]
    image = random_image(seed=39)
    layers = ["conv1", "conv2", "last_conv"]
    maps = [expected_map(engine, image, layer, np.eye(4)[2], method)[0] for layer in layers]
    result = engine.explain(image, layers, 2, method)
    assert result.layers == tuple(layers) and result.layer == "conv1 + conv2 + last_conv"
    assert_close(result.raw, ref.fuse(maps, (32, 32)), what=f"fused {method}")
    many = engine.explain_many([image, random_image(seed=40)], layers, [2, 2], method)[0]
    assert_close(many.raw, ref.fuse(maps, (32, 32)), what=f"fused {method}, batched")


@pytest.mark.parametrize("method", MAP_METHODS)
def test_batches_equal_one_by_one(engines, method):
    engine = engines[1]
    pictures = [random_image(seed=s) for s in (41, 42, 43, 41)]
    classes = [1, None, 3, 2]  # picture 41 twice, two classes: one batch still
    batched = engine.explain_many(pictures, "conv2", classes, method)
    informative = 0
    for picture, cls, result in zip(pictures, classes, batched):
        if cls is None:
            cls = top_class(engine, capture(_run(engine.model, "conv2"), model_input(picture), np.zeros(4))[2])
        expected, _ = expected_map(engine, picture, "conv2", np.eye(4)[cls], method)
        single = engine.explain(picture, "conv2", cls, method)
        assert result.class_index == single.class_index == cls
        for raw in (result.raw, single.raw):
            assert_close(raw, expected, what=f"{method} {picture.name} {cls}", vacuous_ok=True)
        informative += bool((expected.v > 4 * expected.e).any())
    assert informative >= 2


def test_switching_method_reuses_the_capture_and_another_score_does_not(engines, monkeypatch):
    engine = engines[0]
    image = random_image(seed=44)
    capture_ = engine.capture("conv2")
    runs = []
    original = capture_.run
    monkeypatch.setattr(capture_, "run", lambda *a, **k: runs.append(1) or original(*a, **k))
    first = engine.explain(image, "conv2", 1, "gradcam")
    hits = engine.capture_hits
    assert len(runs) == 1
    for i, method in enumerate([m for m in MAP_METHODS if m != "gradcam"] + ["scorecam"], start=1):
        assert engine.explain(image, "conv2", 1, method).method == method
        assert (len(runs), engine.capture_hits) == (1, hits + i), method
    assert engine.explain(image, "conv2", 2, "layercam").class_index == 2
    assert len(runs) == 2  # another class: another score, another capture
    engine.explain(image, "conv2", 1, "layercam", versus=2)
    engine.explain(image, "conv2", 1, "layercam", counterfactual=True)
    assert len(runs) == 4
    np.testing.assert_array_equal(engine.explain(image, "conv2", 1, "gradcam").raw, first.raw)
    assert len(runs) == 4


# -- Score-CAM -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """Conv (40 channels, no activation) → GAP → Dense(softmax): the pre-softmax score is linear in
    the input, so the error of a masked pass is bounded by its gradient times the mask's error."""
    keras.utils.set_random_seed(70)
    inputs = keras.Input((16, 16, 3))
    # Biases above the convolution's range keep A > 0: every map (any class or score) is positive
    # everywhere, so no comparison is vacuous.
    bias = keras.initializers.RandomUniform(1.0, 2.0)
    x = keras.layers.Conv2D(40, 3, strides=2, padding="same", bias_initializer=bias, name="feat")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    # Head weights large enough that masked scores differ by ~0.5 between channels: the softmax
    # over channels is far from uniform, yet its error (2·max|Δs| relative) stays below 1 %.
    head = keras.initializers.RandomNormal(stddev=2.0)
    outputs = keras.layers.Dense(3, activation="softmax", kernel_initializer=head, name="predictions")(x)
    model = keras.Model(inputs, outputs)
    # Channel 0 spans ~1e-8 (a nearly dead filter): there the 1e-8 of (U − min)/(max − min + 1e-8)
    # shrinks the mask to about half, and with it that channel's masked input and score.
    kernel, bias = model.get_layer("feat").get_weights()
    kernel[..., 0] *= 1e-8
    bias[0] = 0.0
    model.get_layer("feat").set_weights([kernel, bias])
    return GradCam(save_and_load(model, tmp_path_factory.mktemp("linear")))


def _linear_parts(engine, absolute=False):
    conv, dense = engine.model.get_layer("feat"), engine.model.get_layer("predictions")
    parts = [w.astype(np.float64) for w in conv.get_weights() + dense.get_weights()]
    kc, bc, kd, bd = [np.abs(p) for p in parts] if absolute else parts

    def features(x):
        return tf.nn.conv2d(tf.constant(x, tf.float64), kc, strides=2, padding="SAME") + bc

    def logits(x):
        return tf.reduce_mean(features(x), axis=(1, 2)) @ kd + bd
    return features, logits


def scorecam_expected(engine, image, weights, max_channels=None, picture_size=(16, 16)):
    """Score-CAM of issue 7 in float64: masks with corners aligned, as scorecam.py documents
    (pytorch-grad-cam's UpsamplingBilinear2d); scores s_k = w·logits(x ⊙ M_k) before softmax.

    Bounds: the forward pass rounds each layer's n-term sums within γ_{n+OPS}(Σ|terms|) (OPS: bias,
    cast, …, as tests/reference.py counts them): conv n = 3·3·3, GAP n = 8·8, Dense n = 40. So A
    errs by ρ_conv·(|W| ∗ |x| + |b|), and a masked score by |∂s/∂x'|·|Δx'| (exact: s is linear)
    plus ρ_forward times the same pass run on absolute values and weights.
    """
    x = model_input(image).astype(np.float64)
    features, logits = _linear_parts(engine)
    abs_features, abs_logits = _linear_parts(engine, absolute=True)
    A = features(x).numpy()[0]
    rho_conv = gamma(27 + OPS_PER_LAYER)
    rho_forward = rho_conv + gamma(64 + OPS_PER_LAYER) + gamma(40 + OPS_PER_LAYER)
    error_a = rho_conv * abs_features(np.abs(x)).numpy()[0]
    A_bounded = Bounded(A, error_a + U32 * (np.abs(A) + error_a))
    channels = np.arange(A.shape[-1])
    if max_channels:
        variance = ref.spatial_variance(A_bounded)
        order = np.argsort(-variance.v)
        last, first_out = order[max_channels - 1], order[max_channels]
        assert variance.v[last] - variance.e[last] > variance.v[first_out] + variance.e[first_out]
        channels = np.sort(order[:max_channels])
    w = tf.constant(np.asarray(weights, np.float64))
    masked = [Bounded(x) * Bounded(m.v[None, ..., None], m.e[None, ..., None])
              for m in ref.scorecam_masks(A_bounded[..., channels], picture_size, align_corners=True)]
    values = np.concatenate([m.v for m in masked])
    batch = tf.constant(values)
    with tf.GradientTape() as tape:
        tape.watch(batch)
        s = tf.linalg.matvec(logits(batch), w)
    slopes = np.abs(tape.gradient(s, batch).numpy())
    magnitude = abs_logits(np.abs(values)).numpy() @ np.abs(np.asarray(weights, np.float64))
    errors = ((slopes * np.concatenate([m.e for m in masked])).sum(axis=(1, 2, 3))
              + rho_forward * magnitude + gamma(len(weights) + 1) * magnitude)
    return ref.scorecam(A_bounded, Bounded(s.numpy(), errors), channels)


@pytest.mark.parametrize("kwargs,weights", [
    (dict(class_index=0), [1.0, 0.0, 0.0]), (dict(class_index=2), [0.0, 0.0, 1.0]),
    (dict(class_index=1, versus=2), [0.0, 1.0, -1.0]), (dict(class_index=1, counterfactual=True), [0.0, -1.0, 0.0])])
def test_scorecam_matches_the_float64_reference(linear, kwargs, weights):
    image = random_image(16, 16, seed=71)
    result = linear.explain(image, "feat", method="scorecam", **kwargs)
    assert result.method == "scorecam" and result.raw.shape == (8, 8)
    assert_close(result.raw, scorecam_expected(linear, image, weights), what=f"scorecam {kwargs}")


def test_faster_scorecam_uses_the_channels_of_largest_variance(linear):
    image = random_image(16, 16, seed=72)
    for n in (1, 10):
        expected = scorecam_expected(linear, image, [0.0, 1.0, 0.0], max_channels=n)
        result = linear.explain(image, "feat", 1, "scorecam", max_channels=n)
        assert_close(result.raw, expected, what=f"max_channels={n}")


def test_scorecam_progress_cancel_and_steps(linear, monkeypatch):
    image = random_image(16, 16, seed=73)
    expected = scorecam_expected(linear, image, [1.0, 0.0, 0.0])
    batches = []
    original = scorecam.MaskScorer.scores
    monkeypatch.setattr(scorecam.MaskScorer, "scores", lambda self, *a: batches.append(1) or original(self, *a))
    seen = []
    result = linear.explain(image, "feat", 0, "scorecam", progress=lambda done, total: seen.append((done, total)))
    assert_close(result.raw, expected)
    masks = len(batches)
    assert masks >= 2, "40 channels should take more than one batch of masks"  # 32 per batch at most
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] <= seen[-1][1]

    class Stop(Exception):
        pass

    def cancel(done, total):
        if batches[masks:]:  # after the first batch of masks of this run
            raise Stop
    with pytest.raises(Stop):
        linear.explain(image, "feat", 0, "scorecam", progress=cancel)
    assert len(batches) == masks + 1  # nothing ran after the callback raised

    task = linear.task(image, "feat", 0, "scorecam")
    steps = 0
    while not task.step():
        steps += 1
        assert task.result is None and task.progress[0] <= task.progress[1]
    assert steps >= masks and task.progress[0] == task.progress[1]
    assert_close(task.result.raw, expected, what="stepped task")


def test_scorecam_batches_of_pictures_equal_one_by_one(linear):
    pictures = [random_image(16, 16, seed=s) for s in (74, 75)]
    many = linear.explain_many(pictures, "feat", [2, 0], "scorecam")
    for picture, cls, result in zip(pictures, [2, 0], many):
        expected = scorecam_expected(linear, picture, np.eye(3)[cls])
        assert_close(result.raw, expected, what="batched")
        assert_close(linear.explain(picture, "feat", cls, "scorecam").raw, expected, what="single")
