"""Black-box classifiers (ONNX, TFLite, SavedModel without Keras metadata): described and run
like the Keras model they were exported from."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import blackbox_factory as bf
from gradcam_desktop.core.blackbox import BlackBoxModel, is_blackbox_path, open_blackbox
from gradcam_desktop.core.errors import ModelLoadError

# Float32 bound. Every runtime computes the same five reductions in its own order (3x3 convs of
# 27, 72 and 108 terms, a mean of 64, a dense layer of 16): reordering a sum of K float32 terms
# moves it by at most K·u·Σ|terms| (u = 2^-24), and the errors of chained layers add up to first
# order, so the logits differ by at most (27 + 72 + 108 + 64 + 16)·u = 287·u ≈ 1.7e-5 times the
# size of the sums. With inputs in [0, 1) that size stays below SUM_SCALE (the test checks it for
# the dense layer, the one sum it can see: Σ|features·kernel| + |bias| ≈ 0.4 here). Softmax's
# Jacobian has ∞-norm ≤ 1/2, so probabilities differ by at most half that: ≈ 1.7e-5. Observed: ~3e-8.
UNIT_ROUNDOFF = 2.0**-24
REDUCTION_TERMS = 27 + 72 + 108 + 64 + 16
SUM_SCALE = 2.0
FLOAT32_BOUND = 0.5 * REDUCTION_TERMS * UNIT_ROUNDOFF * SUM_SCALE
FLOAT_FORMATS = ["tflite", "savedmodel", "onnx", "onnx_nchw"]


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> bf.Exports:
    return bf.build_exports(tmp_path_factory)


def _path(exports: bf.Exports, kind: str):
    return {"tflite": exports.tflite, "tflite_int8": exports.tflite_int8, "savedmodel": exports.savedmodel,
            "onnx": exports.onnx, "onnx_nchw": exports.onnx_nchw}[kind]


@pytest.fixture(scope="session")
def opened(exports) -> dict[str, BlackBoxModel]:
    return {kind: open_blackbox(_path(exports, kind)) for kind in [*FLOAT_FORMATS, "tflite_int8"]}


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text.strip() == text and text, text
    return text


EXPECTED = {  # format, layout, input dtype, "auto" preprocessing, fixed batch, efficient batch
    "tflite": ("tflite", "NHWC", "float32", "raw", None, 16),
    "tflite_int8": ("tflite", "NHWC", "uint8", "unit", 1, 1),  # its quantized input covers [0, 1]
    "savedmodel": ("savedmodel", "NHWC", "float32", "raw", None, 16),
    "onnx": ("onnx", "NHWC", "float32", "raw", None, 16),
    "onnx_nchw": ("onnx", "NCHW", "float32", "raw", 2, 2),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_open_describes_the_model(exports, opened, kind):
    model = opened[kind]
    path = _path(exports, kind)
    assert is_blackbox_path(path)
    assert (model.format, model.layout, model.input_dtype, model.preprocess, model.fixed_batch,
            model.max_batch) == EXPECTED[kind]
    assert model.input_size == bf.SIZE and model.channels == 3
    assert model.units == bf.CLASSES
    assert model.class_names == bf.LABELS  # from <stem>.labels.txt
    assert model.outputs == "probabilities"  # softmax heads, declared in the graph or seen in the answers
    assert model.display_name == path.name and model.source == str(path)
    assert model.sha256 is not None and len(model.sha256) == 64
    assert (model.gradients is not None) == (kind == "savedmodel")
    if model.input_dtype == "float32":  # nothing says how it scales pixels: the user is told
        assert any("scales pixels" in notice for notice in model.notices)
    for notice in model.notices:
        assert "\n" not in notice


def _dense_sums(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, Σ|terms| of each logit) of the last layer, in float64."""
    features = np.asarray(keras.Model(model.input, model.get_layer("gap").output)(x), np.float64)
    kernel, bias = (np.asarray(w, np.float64) for w in model.get_layer("predictions").weights)
    return features @ kernel + bias, np.abs(features) @ np.abs(kernel) + np.abs(bias)


def _logits(model, x: np.ndarray) -> np.ndarray:
    return _dense_sums(model, x)[0]


@pytest.mark.parametrize("kind", FLOAT_FORMATS)
def test_predict_equals_keras_within_float32_reordering(exports, opened, kind):
    x = bf.model_inputs(7, seed=3)
    assert _dense_sums(exports.keras_model, x)[1].max() < SUM_SCALE
    want = np.asarray(exports.keras_model(x), np.float32)
    got = opened[kind].predict(x)
    assert got.dtype == np.float32 and got.shape == (7, bf.CLASSES)
    np.testing.assert_allclose(got, want, rtol=0, atol=FLOAT32_BOUND)


def test_int8_model_within_its_quantization(exports, opened):
    # Computed in 8 bits, there is no a-priori bound as tight as float32's: each of its 5 quantized
    # layers rounds to half a step of its own scale. We allow 4 steps of the output's scale (1/256;
    # observed: under half a step) and ask the top class to agree (this untrained model's
    # probabilities are close together, so that check is weak; the closeness check is the real one).
    model = opened["tflite_int8"]
    step = model.output_info.scale
    assert step == pytest.approx(1 / 256)
    x = bf.model_inputs(5, seed=4)
    want = np.asarray(exports.keras_model(x), np.float32)
    got = model.predict(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * step)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


@pytest.mark.parametrize("kind", ["tflite_int8", "onnx_nchw"])  # batch fixed at 1 and at 2
def test_fixed_batch_model_takes_any_number_of_pictures(opened, kind):
    model = opened[kind]
    x = bf.model_inputs(5, seed=5)
    together = model.predict(x)
    assert together.shape == (5, bf.CLASSES)
    one_by_one = np.concatenate([model.predict(x[i:i + 1]) for i in range(5)])
    np.testing.assert_array_equal(together, one_by_one)  # padding does not leak into answers
    assert model.predict(x[:1]).shape == (1, bf.CLASSES)
    assert model.predict(x[0]).shape == (1, bf.CLASSES)  # one picture without a batch axis
    assert model.predict(x[:0]).shape == (0, bf.CLASSES)


def test_predict_refuses_a_wrong_picture_size(opened):
    with pytest.raises(ValueError, match="32x32"):
        opened["tflite"].predict(np.zeros((1, 16, 16, 3), np.float32))


def test_savedmodel_gradients_equal_keras_gradients(exports, opened):
    model = opened["savedmodel"]
    x = bf.model_inputs(3, seed=6)
    weights = np.random.default_rng(1).normal(size=(3, bf.CLASSES)).astype(np.float32)
    scores, grads = model.gradients(x, weights)

    tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(tensor)
        want_scores = tf.reduce_sum(exports.keras_model(tensor) * weights, axis=-1)
    want_grads = tape.gradient(want_scores, tensor).numpy()
    assert scores.shape == (3,) and grads.shape == x.shape and grads.dtype == np.float32
    # The same TensorFlow kernels on the same graph: equal up to a few float32 roundings.
    np.testing.assert_allclose(scores, want_scores.numpy(), rtol=0, atol=FLOAT32_BOUND)
    np.testing.assert_allclose(grads, want_grads, rtol=0, atol=1e-5 * np.abs(want_grads).max())
    # More pictures than one runtime call takes: chunked, same answers.
    many = np.repeat(x, 7, axis=0)
    many_scores, many_grads = model.gradients(many, np.repeat(weights, 7, axis=0))
    np.testing.assert_allclose(many_scores[::7], scores, rtol=0, atol=FLOAT32_BOUND)
    np.testing.assert_allclose(many_grads[::7], grads, rtol=0, atol=1e-5 * np.abs(want_grads).max())


def test_sidecar_fills_what_the_file_cannot_tell(exports, tmp_path):
    path = tmp_path / "model.tflite"
    shutil.copyfile(exports.tflite, path)
    (tmp_path / "model.gradcam.json").write_text(json.dumps(
        {"preprocess": "unit", "outputs": "scores", "labels": ["a", "b", "c", "d"]}), encoding="utf-8")
    model = open_blackbox(path)
    assert (model.preprocess, model.outputs, model.class_names) == ("unit", "scores", ["a", "b", "c", "d"])
    assert not any("scales pixels" in notice for notice in model.notices)
    assert open_blackbox(path, preprocess="symmetric").preprocess == "symmetric"  # the caller's choice wins


def test_labels_that_do_not_match_the_classes_are_replaced_with_a_notice(exports, tmp_path):
    path = tmp_path / "model.onnx"
    bf.write_onnx_nchw(exports.keras_model, path, data_file=None)
    bf.write_labels(path, ["only", "three", "names"])
    model = open_blackbox(path)
    assert model.class_names == ["class 0", "class 1", "class 2", "class 3"]
    assert any("lists 3 names but the model has 4 classes" in notice for notice in model.notices)


def test_dynamic_sides_take_the_sidecar_size(exports, tmp_path):
    path = tmp_path / "dynamic.onnx"
    bf.write_onnx_nchw(exports.keras_model, path, data_file=None, batch="N", side="S")
    model = open_blackbox(path)
    assert (model.layout, model.input_size, model.fixed_batch) == ("NCHW", (None, None), None)
    x = bf.model_inputs(2, seed=8)
    np.testing.assert_allclose(model.predict(x), np.asarray(exports.keras_model(x)), rtol=0, atol=FLOAT32_BOUND)
    (tmp_path / "dynamic.gradcam.json").write_text('{"input_size": [48, 40]}', encoding="utf-8")
    assert open_blackbox(path).input_size == (48, 40)


def test_every_side_dynamic_is_described_from_defaults_and_a_test_prediction(exports, tmp_path):
    path = tmp_path / "open.onnx"
    bf.write_onnx_nchw(exports.keras_model, path, data_file=None, batch="N", side="S", channels="C", classes="K")
    model = open_blackbox(path)
    # Nothing tells where the channels are: ONNX's usual NCHW, RGB, said in notices.
    assert (model.layout, model.channels, model.input_size) == ("NCHW", 3, (None, None))
    assert any("does not say where its channels are" in notice for notice in model.notices)
    assert any("does not fix its number of channels" in notice for notice in model.notices)
    assert (model.units, model.outputs) == (bf.CLASSES, "probabilities")  # learned from a test prediction
    assert model.class_names == [f"class {i}" for i in range(bf.CLASSES)]  # no labels file here
    x = bf.model_inputs(3, seed=10)
    np.testing.assert_allclose(model.predict(x), np.asarray(exports.keras_model(x)), rtol=0, atol=FLOAT32_BOUND)


def test_sidecar_may_not_contradict_the_model(exports, tmp_path):
    path = tmp_path / "model.tflite"
    shutil.copyfile(exports.tflite, path)
    sidecar = tmp_path / "model.gradcam.json"
    for content, phrase in (({"input_size": [64, 64]}, "says input_size 64x64 but the model takes 32x32"),
                            ({"layout": "NCHW"}, "takes 32 channels"),
                            ({"layout": "CHWN"}, "layout must be NHWC or NCHW"),
                            ({"outputs": "logits"}, "outputs must be 'probabilities' or 'scores'")):
        sidecar.write_text(json.dumps(content), encoding="utf-8")
        with pytest.raises(ModelLoadError) as error:
            open_blackbox(path)
        assert phrase in _one_line(error)


def test_several_outputs_need_the_sidecar_to_name_one(exports, tmp_path):
    path = tmp_path / "two.onnx"
    bf.write_onnx_nchw(exports.keras_model, path, data_file=None, logits_output=True)
    with pytest.raises(ModelLoadError) as error:
        open_blackbox(path)
    assert "has 2 outputs ('probabilities', 'logits'); name the one" in _one_line(error)
    (tmp_path / "two.gradcam.json").write_text('{"output": "logits"}', encoding="utf-8")
    model = open_blackbox(path)
    assert (model.output_name, model.outputs) == ("logits", "scores")  # no softmax: scores
    x = bf.model_inputs(2, seed=9)
    np.testing.assert_allclose(model.predict(x), _logits(exports.keras_model, x), rtol=0,
                               atol=2 * FLOAT32_BOUND)


def test_an_input_that_is_not_an_image_batch_is_one_line(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "flat",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])
    path = tmp_path / "flat.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(ModelLoadError) as error:
        open_blackbox(path)
    assert "input 'x' has shape (?, 10); Grad-CAM Desktop needs an image batch" in _one_line(error)


def test_which_paths_are_black_boxes(exports, tmp_path):
    assert is_blackbox_path(exports.savedmodel / "saved_model.pb")
    assert is_blackbox_path(tmp_path / "model.ONNX") and is_blackbox_path("x.tflite")
    assert not is_blackbox_path(tmp_path / "model.keras") and not is_blackbox_path(tmp_path)
    keras2 = tmp_path / "keras2_savedmodel"
    keras2.mkdir()
    (keras2 / "saved_model.pb").write_bytes(b"")
    (keras2 / "keras_metadata.pb").write_bytes(b"")
    assert not is_blackbox_path(keras2)  # Keras metadata: models.load_model opens it
