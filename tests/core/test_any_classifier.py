"""Issue 16 through the engine: the new methods behind the one registry, and black-box files.

The methods' own definitions are tested against references in test_pixel_methods.py and
test_perturbation.py; here the engine's wiring is: the score it explains, the preprocessing, the
result's fields, what a black box is offered and refused, and — the issue's "Done when" — that an
exported file's occlusion map equals the Keras model's own.
"""

from __future__ import annotations

import numpy as np
import pytest

from blackbox_factory import export_onnx_keras, export_tflite, write_labels
from model_factory import gap_dense_model, random_image
from gradcam_desktop.core import cams, perturbation, pixels
from gradcam_desktop.core.errors import LayerError, MethodError
from gradcam_desktop.core.gradcam import INPUT_LAYER, GradCam
from gradcam_desktop.core.models import _describe, load_model

SIZE = 32
CLASSES = 4
#: Float32 bound for two runtimes computing the same network: every score is a sum of at most
#: ~10³ float32 products per layer (3×3×16 conv taps, 16 dense inputs), so each differs from the exact
#: value by at most n·ε·Σ|terms| ≈ 10³ · 1.2e-7 ≈ 1.2e-4 of the scores' magnitude; a map value is a
#: difference of two scores averaged over windows, so the same bound on max |y| holds for it.
RUNTIME_RTOL = 1.2e-4


def _engine(model, preprocess="raw"):
    return GradCam(_describe(model, source="test", display_name="test", class_names=None, preprocess=preprocess))


@pytest.fixture(scope="module")
def logits_model():
    """A linear head: the Keras engine and an exported file explain the same number (the logit)."""
    return gap_dense_model((SIZE, SIZE, 3), classes=CLASSES, activation=None, seed=3)


@pytest.fixture(scope="module")
def exports(logits_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("any_classifier")
    logits_model(np.zeros((1, SIZE, SIZE, 3), np.float32))
    paths = {"tflite": export_tflite(logits_model, folder / "model.tflite"),
             "onnx": export_onnx_keras(logits_model, folder / "model.onnx")}
    saved = folder / "exported"
    logits_model.export(str(saved), format="tf_saved_model", verbose=False)
    paths["savedmodel"] = saved
    for path in paths.values():
        write_labels(path)
        path.with_name(path.stem + ".gradcam.json").write_text('{"preprocess": "raw", "outputs": "scores"}')
    return paths


def _brute_force_occlusion(model, x: np.ndarray, class_index: int, window: int, stride: int) -> np.ndarray:
    """Captum's definition by hand, in float64 on the Keras model's own logits (eager)."""
    height, width = x.shape[1:3]
    y = float(np.asarray(model(x))[0, class_index])
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for top in range(0, height - window + 1, stride):
        for left in range(0, width - window + 1, stride):
            hidden = x.copy()
            hidden[0, top:top + window, left:left + window, :] = 0.0
            drop = y - float(np.asarray(model(hidden))[0, class_index])
            total[top:top + window, left:left + window] += drop
            count[top:top + window, left:left + window] += 1
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def test_occlusion_through_the_engine_is_captums_definition_on_the_logit(logits_model):
    engine = _engine(logits_model)
    image = random_image(SIZE, SIZE, seed=4)
    result = engine.explain(image, method="occlusion", class_index=1, method_options={"window": 8, "stride": 4})
    x = engine.model_input(image).astype(np.float32)
    expected = _brute_force_occlusion(logits_model, x, 1, 8, 4)
    scale = np.abs(np.asarray(logits_model(x))).max()
    assert result.layer == INPUT_LAYER and result.class_index == 1 and result.method == "occlusion"
    assert result.attribution is not None and result.attribution.shape == (SIZE, SIZE)
    np.testing.assert_allclose(result.attribution, expected, atol=RUNTIME_RTOL * scale)
    np.testing.assert_array_equal(result.raw, perturbation.display(result.attribution))
    assert result.target_score == pytest.approx(float(np.asarray(logits_model(x))[0, 1]), rel=1e-5)


def test_rise_and_pixel_methods_through_the_engine_equal_the_core_functions(logits_model):
    """The engine hands each method the explained score's vector (top class filled in) and the
    preprocessed input: its maps equal the core functions called directly with them."""
    engine = _engine(logits_model)
    image = random_image(SIZE, SIZE, seed=5)
    x = engine.model_input(image)
    top = int(np.argmax(engine.logits(x)[0]))
    onehot = np.eye(CLASSES, dtype=np.float32)[top]
    rise = engine.explain(image, method="rise", method_options={"samples": 64, "seed": 7})

    def scores(batch):
        return engine.logits(batch).astype(np.float64) @ onehot.astype(np.float64)

    np.testing.assert_array_equal(rise.attribution, perturbation.rise(scores, x, n=64, seed=7))
    grad = engine.input_gradients()
    for name, options in (("saliency", {}), ("integrated-gradients", {"steps": 8}),
                          ("smoothgrad", {"samples": 4, "seed": 1})):
        result = engine.explain(image, method=name, method_options=options)
        expected = pixels.start(name, grad, x, onehot, 0.0, **options).result()
        np.testing.assert_array_equal(result.attribution, expected)
        np.testing.assert_array_equal(result.raw, pixels.display(name, expected))
        assert result.class_index == top and result.layer == INPUT_LAYER


def test_guided_gradcam_is_guided_backprop_times_the_upsampled_gradcam_map(logits_model):
    engine = _engine(logits_model)
    image = random_image(SIZE, SIZE, seed=6)
    guided = engine.explain(image, method="guided-backprop", class_index=2)
    gradcam = engine.explain(image, method="gradcam", class_index=2)
    both = engine.explain(image, method="guided-gradcam", class_index=2)
    assert both.layer == gradcam.layer  # the Grad-CAM half is taken at a layer
    np.testing.assert_array_equal(both.attribution, pixels.guided_gradcam(guided.attribution, gradcam.raw))


def test_options_are_checked_per_method_in_one_line(logits_model):
    engine = _engine(logits_model)
    image = random_image(SIZE, SIZE)
    with pytest.raises(MethodError, match=r"--window only applies to Occlusion, not to Grad-CAM\."):
        engine.explain(image, method="gradcam", method_options={"window": 4})
    with pytest.raises(MethodError, match=r"--samples must be at least 1"):
        engine.explain(image, method="rise", method_options={"samples": 0})


@pytest.mark.parametrize("kind", ["tflite", "onnx", "savedmodel"])
def test_exported_file_occlusion_equals_the_keras_models(kind, exports, logits_model):
    path = exports[kind]
    loaded = load_model(str(path))
    assert loaded.model is None and loaded.runtime.format == kind
    assert loaded.class_names == ["cat", "dog", "bird", "fish"]
    box, keras_engine = GradCam(loaded), _engine(logits_model)
    image = random_image(SIZE, SIZE, seed=8)
    options = {"window": 8, "stride": 4}
    ours = box.explain(image, method="occlusion", class_index=3, method_options=options)
    theirs = keras_engine.explain(image, method="occlusion", class_index=3, method_options=options)
    scale = np.abs(keras_engine.logits(keras_engine.model_input(image))).max()
    np.testing.assert_allclose(ours.attribution, theirs.attribution, atol=RUNTIME_RTOL * scale)
    np.testing.assert_allclose(box.predict(image).probabilities, keras_engine.predict(image).probabilities,
                               atol=RUNTIME_RTOL)


@pytest.mark.parametrize("kind", ["tflite", "onnx", "savedmodel"])
def test_a_black_box_is_offered_what_it_can_run_and_refused_the_rest_in_one_line(kind, exports):
    path = exports[kind]
    engine = GradCam(load_model(str(path)))
    gradients = kind == "savedmodel"  # a SavedModel's function can be differentiated
    offered = {name for name in cams.METHODS if engine.offers(name)}
    expected = {m.name for m in cams.METHODS.values() if not m.uses_layer and (gradients or not m.uses_gradients)}
    assert offered == expected and {"occlusion", "rise"} <= offered and "gradcam" not in offered
    assert engine.default_layer is None and engine.prepare() is False
    image = random_image(SIZE, SIZE)
    with pytest.raises(MethodError) as refused:
        engine.explain(image, method="gradcam")
    message = str(refused.value)
    assert "Grad-CAM needs a layer and gradients" in message and "shows no layers" in message
    assert "occlusion, rise" in message and "\n" not in message
    with pytest.raises(LayerError, match="shows no layers"):
        engine.capture("conv1")
    if gradients:
        saliency = engine.explain(image, method="saliency", class_index=0)
        assert saliency.attribution.shape == (SIZE, SIZE, 3) and np.isfinite(saliency.attribution).all()
