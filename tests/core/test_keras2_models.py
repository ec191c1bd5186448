"""Keras 2 (tf.keras / ``tf_keras``) models in the three formats Keras 2 writes — .h5, .keras and a
SavedModel folder — opened by the app and checked against an independent reference computed in
Keras 2 itself.

Six models (tests/keras2_factory.py): a Sequential with ``input_shape=``, a functional model with
BatchNormalization and a separate Softmax layer, a transfer model (a functional base called with
``training=False`` inside an outer model), a one-unit sigmoid model, and tf_keras' MobileNetV2
(DepthwiseConv2D) and Xception (SeparableConv2D). Each is saved once and opened once per format.

The reference never goes through the app: it asks the *original* tf_keras model (the object that
was saved) for the layer's output and the head's input in one eager call with ``training=False``,
applies the head's Dense by hand for the pre-softmax score (x @ W + b; for a separate Softmax layer,
its input), and differentiates with an eager GradientTape (tests/reference.py reduces it in float64
and derives the tolerance). Float32 maps are compared at layers that feed GAP → Dense, where the
gradient w/HW is exact; a layer deeper inside the nested base is compared on float64 clones of the
loaded and the original model (tests/reference.py, "When the bound does not apply").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
import tf_keras

from gradcam_desktop.core.backend import is_keras2
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.models import load_model

import keras2_factory as k2
from model_factory import random_image
from reference import (
    U32,
    Reference,
    assert_map_close,
    assert_top_class_decided,
    exact_gradient,
    probabilities,
    probability_rtol,
    reference_gradcam,
    well_conditioned,
)


@dataclass(frozen=True)
class Spec:
    builder: object
    side: int
    classes: int  # the app's classes: 2 for the one-unit sigmoid model
    head: str  # the app's head kind
    default: str  # the layer the app must pick by default
    batch_norm: bool  # inference and training mode differ (BatchNorm outside a training=False call)
    #: SavedModel with the layers' traced functions (tf.keras' default). Xception's are left out:
    #: tracing its 130 layers is most of this module's time, and MobileNetV2's traced graph already
    #: holds the same kinds of operations (depthwise and pointwise convolutions, BatchNorm, adds).
    save_traces: bool = True


MODELS = {
    "sequential": Spec(k2.sequential_model, 32, 4, "softmax", "conv2", False),
    "bn_softmax": Spec(k2.batchnorm_softmax_model, 32, 5, "softmax", "relu2", True),
    "transfer": Spec(k2.transfer_model, 32, 3, "softmax", "base/last_conv", False),
    "binary": Spec(k2.binary_model, 32, 2, "binary", "conv2", True),
    "mobilenet_v2": Spec(k2.mobilenet_v2, 64, 5, "softmax", "out_relu", True),
    "xception": Spec(k2.xception, 71, 5, "softmax", "block14_sepconv2_act", True, save_traces=False),
}
#: A layer inside the transfer model's base whose gradient crosses ReLU kinks and a max-pool:
#: compared on float64 clones.
DEEP_NESTED = "base/conv1"
SEEDS = (11, 12, 13)


class Built:
    """One original tf_keras model, its three files and its (format-independent) references."""

    def __init__(self, name: str, folder):
        self.name = name
        self.spec = MODELS[name]
        self.model = self.spec.builder()
        self.paths = k2.save_formats(self.model, folder, name, save_traces=self.spec.save_traces)
        self.rho = k2.discrepancy(self.model)
        self._functions: dict = {}
        self._references: dict = {}
        self._twin = None

    def features_and_logits(self, layer: str, model=None):
        model = self.model if model is None else model
        key = (layer, id(model))
        if key not in self._functions:
            outer, _, inner = layer.rpartition("/")
            self._functions[key] = (k2.nested_reference(model, outer, inner) if outer
                                    else k2.head_reference(model, layer))
        return self._functions[key]

    def reference(self, layer: str, seed: int, weights) -> Reference:
        """The reference map of noise image ``seed`` at ``layer`` for the score ``weights``·logits.

        ρ_A: both evaluations' pass errors (``discrepancy``). ρ_g: the layer feeds GAP → Dense;
        for a score vector with one non-zero entry (one-hot, ±1, or ±2 for one sigmoid unit's versus:
        scaling by 2 is exact) the gradient v·Wᵀ/HW is a kernel column times v divided by HW, rounded
        once on each side (``exact_gradient``); a score vector with two non-zero entries
        makes v·Wᵀ a sum, so ρ_g is the backward pass error of the layers after the mapped one
        (the Dense's sum, the pooling's division), on both sides.
        """
        weights = np.asarray(weights, np.float32)
        key = (layer, seed, weights.tobytes())
        if key not in self._references:
            rho_g = exact_gradient() if np.count_nonzero(weights) == 1 else \
                2 * k2.pass_error(layers_after(self.model, layer))
            self._references[key] = reference_gradcam(self.features_and_logits(layer), pixels(self.spec, seed),
                                                      weights, self.rho, rho_g)
        return self._references[key]

    def twin(self):
        """A float64 clone of the original model (for the reference of a deep nested layer)."""
        if self._twin is None:
            self._twin = k2.float64_clone(self.model)
        return self._twin


def layers_after(model, layer: str) -> list:
    """The top-level layers that run after ``layer`` (after its nested model for ``outer/inner``)."""
    top = model.get_layer(layer.split("/")[0])
    return model.layers[model.layers.index(top) + 1:]


def pixels(spec: Spec, seed: int) -> np.ndarray:
    """The noise picture as the app feeds it ("unit": divided by 255 in float32; no resizing)."""
    return random_image(spec.side, spec.side, seed=seed).rgb.astype(np.float32)[None] / np.float32(255.0)


def image(spec: Spec, seed: int):
    return random_image(spec.side, spec.side, seed=seed)


def score_weights(spec: Spec, cls: int, versus: int | None = None, counterfactual: bool = False) -> np.ndarray:
    """The score vector over the model's output units: onehot(c) − onehot(B), −onehot(c); for one
    sigmoid unit class 1 is +z and class 0 is −z."""
    def unit(index):
        if spec.head == "binary":
            return np.array([1.0 if index == 1 else -1.0], np.float32)
        return np.eye(spec.classes, dtype=np.float32)[index]
    weights = -unit(cls) if counterfactual else unit(cls)
    return weights - unit(versus) if versus is not None else weights


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            cache[name] = Built(name, tmp_path_factory.mktemp(name))
        return cache[name]
    return get


@dataclass
class Case:
    built: Built
    kind: str
    engine: GradCam

    @property
    def spec(self) -> Spec:
        return self.built.spec


@pytest.fixture(scope="module", params=[(name, kind) for name in MODELS for kind in k2.FORMATS],
                ids=lambda param: f"{param[0]}-{param[1]}")
def case(request, built):
    name, kind = request.param
    model = built(name)
    return Case(model, kind, GradCam(load_model(model.paths[kind])))


# ------------------------------------------------------------------ opening

def test_opens_as_the_keras2_model_that_was_saved(case):
    loaded, spec = case.engine.loaded, case.spec
    assert is_keras2(loaded.model)
    assert isinstance(loaded.model, tf_keras.Model)
    assert loaded.preprocess == "unit"  # no scaling layer in front: the reference divides by 255 too
    assert loaded.input_size == (spec.side, spec.side) and loaded.channels == 3
    assert case.engine.head.kind == spec.head
    assert len(case.engine.class_names) == spec.classes
    assert case.engine.default_layer == spec.default
    # Saving stores float32 weights as they are: the loaded weights are the original's, bit for bit.
    original = case.built.model.get_weights()
    reloaded = loaded.model.get_weights()
    assert len(original) == len(reloaded)
    for before, after in zip(original, reloaded):
        np.testing.assert_array_equal(before, after)


def test_batch_norm_statistics_make_inference_mode_matter(built):
    """The fixtures are sensitive: BatchNorm run in training mode (normalizing by the picture's own
    statistics) moves the outputs beyond the bounds the tests below allow."""
    for name, spec in MODELS.items():
        this = built(name)
        model, x = this.model, pixels(spec, SEEDS[0])
        if name == "transfer":  # its base is called with training=False inside: look at the base
            model = model.get_layer("base")
        elif not spec.batch_norm:
            continue
        inference = np.asarray(model(x, training=False), np.float64)
        training = np.asarray(model(x, training=True), np.float64)
        if name == "transfer":  # the base's features: the activation bound ρ_A(|A| + mean|A|)
            bound = this.rho * (np.abs(inference) + np.abs(inference).mean())
        else:  # probabilities: the bound of test_probabilities_are_the_models_own_in_inference_mode
            rtol = probability_rtol(this.reference(spec.default, SEEDS[0], score_weights(spec, 0)).logits, this.rho)
            bound = rtol * (np.abs(inference) + (1 if spec.head == "binary" else 0))
        assert (np.abs(training - inference) > bound).any(), name


# ------------------------------------------------------------------ probabilities

def test_probabilities_are_the_models_own_in_inference_mode(case):
    spec, model = case.spec, case.built.model
    for seed in SEEDS[:2]:
        expected = np.asarray(model(pixels(spec, seed), training=False), np.float64)[0]
        if spec.head == "binary":
            expected = np.array([1.0 - expected[0], expected[0]])
        logits = case.built.reference(spec.default, seed, score_weights(spec, 0)).logits
        # The engine's float32 logits and the model's own differ by at most the two passes' rounding
        # (ρ = discrepancy); probability_rtol turns that into a relative bound on the probabilities,
        # plus the float32 softmax/sigmoid the Keras layer computed (tests/reference.py). For the
        # sigmoid, |Δp| ≤ rtol·p also bounds 1 − p absolutely.
        rtol = probability_rtol(logits, case.built.rho)
        got = case.engine.predict(image(spec, seed)).probabilities
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol if spec.head == "binary" else 0)
        # ...and both are the reference's float64 logits through softmax/sigmoid.
        np.testing.assert_allclose(got, probabilities(logits, spec.head), rtol=rtol, atol=rtol)


# ------------------------------------------------------------------ maps

def test_maps_match_the_keras2_reference_for_every_class(case):
    spec = case.spec
    layer, seed = spec.default, SEEDS[0]  # the transfer model's default is the nested base/last_conv
    references = [case.built.reference(layer, seed, score_weights(spec, cls)) for cls in range(spec.classes)]
    assert any(map(well_conditioned, references))  # some class's map is not zero everywhere
    for cls, reference in enumerate(references):
        result = case.engine.explain(image(spec, seed), layer, cls)
        assert result.layer == layer and result.class_index == cls
        assert result.raw.shape == reference.cam.shape
        assert_map_close(result.raw, reference, allow_flat=True)
        # The explained score w·logits: each logit within Δ = (ρ + u)(max|z| + mean|z|) of the
        # reference's (tests/reference.py, probability_rtol), so w·z within Σ|w|·Δ.
        w = score_weights(spec, cls).astype(np.float64)
        z = reference.logits
        bound = (case.built.rho + U32) * (np.abs(z).max() + np.abs(z).mean()) * float(np.abs(w).sum())
        assert result.target_score == pytest.approx(float(w @ z), abs=bound)


@pytest.mark.parametrize("case", [("transfer", kind) for kind in k2.FORMATS], indirect=True,
                         ids=lambda param: f"{param[0]}-{param[1]}")
def test_deep_nested_layer_on_float64_clones(case):
    """``base/conv1`` of the transfer model: its gradient crosses ReLUs and a max-pool, so the
    loaded model's float64 clone is compared with the original model's float64 clone."""
    spec = case.spec
    twin = k2.float64_clone(case.engine.model)
    assert all(w.dtype == "float64" for w in twin.weights)
    engine = GradCam(replace(case.engine.loaded, model=twin, head=None))
    reference_model = case.built.twin()
    # Both sides compute in float64: ρ is the float64 pass error of each (the map is cast to float32
    # at the end, which reference_map counts).
    rho = k2.discrepancy(reference_model)
    run = case.built.features_and_logits(DEEP_NESTED, reference_model)
    references = [reference_gradcam(run, pixels(spec, SEEDS[0]).astype(np.float64), score_weights(spec, cls), rho, rho)
                  for cls in range(spec.classes)]
    assert any(map(well_conditioned, references))
    for cls, reference in enumerate(references):
        result = engine.explain(image(spec, SEEDS[0]), DEEP_NESTED, cls)
        assert result.raw.shape == (spec.side, spec.side)
        assert_map_close(result.raw, reference, allow_flat=True)


def test_explain_many_equals_single_explains(case):
    spec, engine = case.spec, case.engine
    layer = spec.default
    classes = [1, 0, None]  # None: the picture's top class
    pictures = [image(spec, seed) for seed in SEEDS]
    batch = engine.explain_many(pictures, layer, classes)
    assert len(batch) == len(pictures)
    for seed, picture, asked, many in zip(SEEDS, pictures, classes, batch):
        cls = asked
        if asked is None:
            logits = case.built.reference(layer, seed, score_weights(spec, 0)).logits
            expected = probabilities(logits, spec.head)
            assert_top_class_decided(expected, probability_rtol(logits, case.built.rho))
            cls = int(np.argmax(expected))
        single = engine.explain(picture, layer, asked)
        assert many.class_index == single.class_index == cls
        assert many.layer == single.layer == layer
        reference = case.built.reference(layer, seed, score_weights(spec, cls))
        # Both meet the same reference, so they differ from each other by at most twice its bound.
        assert_map_close(many.raw, reference, allow_flat=True)
        assert_map_close(single.raw, reference, allow_flat=True)
        assert np.all(np.abs(many.raw.astype(np.float64) - single.raw) <= 2 * reference.tolerance)
        rtol = probability_rtol(reference.logits, case.built.rho)
        np.testing.assert_allclose(many.prediction.probabilities, single.prediction.probabilities,
                                   rtol=2 * rtol, atol=2 * rtol if spec.head == "binary" else 0)


def test_versus_and_counterfactual_explain_their_score_vectors(case):
    spec, engine = case.spec, case.engine
    layer, seed = spec.default, SEEDS[1]
    picture = image(spec, seed)
    targets = [(1, 0, False), (0, 1, False), (0, None, True), (1, None, True)]
    if spec.classes > 2:
        targets.append((2, 1, False))
    references = []
    for cls, versus, counterfactual in targets:
        weights = score_weights(spec, cls, versus, counterfactual)
        reference = case.built.reference(layer, seed, weights)
        result = engine.explain(picture, layer, cls, versus=versus, counterfactual=counterfactual)
        assert (result.class_index, result.versus_index, result.counterfactual) == (cls, versus, counterfactual)
        assert result.score_kind == ("counterfactual" if counterfactual else "versus")
        assert_map_close(result.raw, reference, allow_flat=True)
        references.append(reference)
    assert any(map(well_conditioned, references))

