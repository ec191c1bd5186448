"""Hostile and broken black-box files: refused with one line before any runtime is given them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf
from onnx import TensorProto, helper

import blackbox_factory as bf
from gradcam_desktop.core.blackbox import open_blackbox
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> bf.Exports:
    return bf.build_exports(tmp_path_factory)


@pytest.fixture
def no_runtimes(monkeypatch):
    """Fail the test if ONNX Runtime, a TFLite interpreter or TensorFlow's SavedModel loader is used."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a runtime was given a file that should have been refused first")

    monkeypatch.setattr(onnxruntime, "InferenceSession", forbidden)
    monkeypatch.setattr("gradcam_desktop.core.tflite_model._interpreter_class", lambda: forbidden)
    monkeypatch.setattr(tf.saved_model, "load", forbidden)


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert text and "\n" not in text and text.strip() == text, text
    return text


def _refused(path: Path, phrase: str, *, unsafe: bool = True) -> str:
    with pytest.raises(ModelLoadError) as error:
        open_blackbox(path)
    text = _one_line(error)
    assert isinstance(error.value, UnsafeModelError) == unsafe, text
    assert phrase in text, text
    if unsafe:
        assert text.startswith(f"Refused {path.name}: "), text
        assert not error.value.trustable
    return text


# ------------------------------------------------------------------ ONNX: external data

def _copy_nchw(exports: bf.Exports, folder: Path) -> tuple[Path, onnx.ModelProto]:
    """The helper-written NCHW model and its weights file in ``folder``; its proto, data not loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    shutil.copyfile(exports.onnx_nchw, path)
    shutil.copyfile(exports.onnx_nchw_data, folder / exports.onnx_nchw_data.name)
    return path, onnx.load(str(path), load_external_data=False)


def _set_external(proto: onnx.ModelProto, tensor: str, **entries: str) -> None:
    initializer = next(t for t in proto.graph.initializer if t.name == tensor)
    current = {e.key: e.value for e in initializer.external_data}
    current.update(entries)
    del initializer.external_data[:]
    for key, value in current.items():
        initializer.external_data.add(key=key, value=value)


def _save(proto: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(proto.SerializeToString())  # as is: onnx.save would resolve external data
    return path


def test_the_untouched_copy_opens(exports, tmp_path):
    path, _ = _copy_nchw(exports, tmp_path / "good")
    model = open_blackbox(path)
    x = bf.model_inputs(2)
    np.testing.assert_allclose(model.predict(x), np.asarray(exports.keras_model(x)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "backslash"])
def test_onnx_data_outside_the_folder_is_refused(exports, tmp_path, no_runtimes, where):
    path, proto = _copy_nchw(exports, tmp_path / "model")
    outside = tmp_path / "x.bin"
    shutil.copyfile(exports.onnx_nchw_data, outside)  # the data is really there: only where it is matters
    location = {"parent": "../x.bin", "absolute": str(outside), "symlink": "linked.bin",
                "backslash": "..\\x.bin"}[where]
    if where == "symlink":
        os.symlink(outside, path.parent / "linked.bin")
    _set_external(proto, "conv1_w", location=location)
    text = _refused(_save(proto, path), "outside the model's folder")
    assert "tensor 'conv1_w' reads its data from" in text


def test_onnx_data_in_the_runtimes_memory_is_refused(exports, tmp_path, no_runtimes):
    path, proto = _copy_nchw(exports, tmp_path / "model")
    _set_external(proto, "conv1_w", location="*/_ORT_MEM_ADDR_/*", offset="140000000000", length="864")
    _refused(_save(proto, path), "read its data from the program's memory")


def test_onnx_declaring_more_than_its_data_file_holds_is_refused(exports, tmp_path, no_runtimes):
    path, proto = _copy_nchw(exports, tmp_path / "model")
    size = exports.onnx_nchw_data.stat().st_size
    _set_external(proto, "dense_b", length=str(size * 1000))
    _refused(_save(proto, path), "but that file holds only")

    path, proto = _copy_nchw(exports, tmp_path / "dims")
    weights = next(t for t in proto.graph.initializer if t.name == "dense_w")
    weights.dims[:] = [16, 4_000_000_000]  # 256 GB declared over a 256-byte slice
    _refused(_save(proto, path), "but that file holds only")


def test_onnx_inline_data_that_does_not_match_its_shape_is_refused(exports, tmp_path, no_runtimes):
    proto = bf.onnx_nchw_graph(exports.keras_model)
    weights = next(t for t in proto.graph.initializer if t.name == "dense_w")
    weights.dims[:] = [16, 100_000_000]
    text = _refused(_save(proto, tmp_path / "inline.onnx"), "size and data do not match")
    assert "tensor 'dense_w' declares 6.0 GB" in text


def test_onnx_missing_data_file_is_a_load_error(exports, tmp_path, no_runtimes):
    path, _ = _copy_nchw(exports, tmp_path / "model")
    (path.parent / exports.onnx_nchw_data.name).unlink()
    _refused(path, "which is missing next to it", unsafe=False)


# ------------------------------------------------------------------ ONNX: operators

def _with_node(exports, node: onnx.NodeProto, *extra_opsets: onnx.OperatorSetIdProto, functions=()) -> onnx.ModelProto:
    proto = bf.onnx_nchw_graph(exports.keras_model)
    graph = proto.graph
    last = graph.node[-1]  # Softmax(logits) -> probabilities: route it through ``node`` first
    node.input[:] = ["logits"]
    node.output[:] = ["routed"]
    last.input[:] = ["routed"]
    graph.node.insert(len(graph.node) - 1, node)
    proto.opset_import.extend(extra_opsets)
    proto.functions.extend(functions)
    return proto


def test_onnx_custom_domain_operator_is_refused(exports, tmp_path, no_runtimes):
    node = helper.make_node("Exfiltrate", [], [], domain="com.evil", name="sneaky")
    proto = _with_node(exports, node, helper.make_opsetid("com.evil", 1))
    text = _refused(_save(proto, tmp_path / "custom.onnx"), "uses the operator 'Exfiltrate' from the custom domain 'com.evil'")
    assert "('sneaky')" in text and "plugin libraries" in text


def test_onnx_custom_operator_inside_a_subgraph_is_refused(exports, tmp_path, no_runtimes):
    inner = helper.make_graph([helper.make_node("Exfiltrate", ["logits"], ["out"], domain="com.evil")], "branch",
                              [], [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    condition = helper.make_tensor("yes", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["cond"], [], then_branch=inner, else_branch=inner)
    proto = _with_node(exports, node, helper.make_opsetid("com.evil", 1))
    node = proto.graph.node[-2]
    node.input[:] = ["cond"]
    proto.graph.initializer.append(condition)
    _refused(_save(proto, tmp_path / "subgraph.onnx"), "from the custom domain 'com.evil'")


def test_onnx_local_function_of_standard_operators_opens_and_a_recursive_one_is_refused(exports, tmp_path):
    body = helper.make_function("local.fn", "Passthrough", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])],
                                [helper.make_opsetid("", 17)])
    node = helper.make_node("Passthrough", [], [], domain="local.fn")
    proto = _with_node(exports, node, helper.make_opsetid("local.fn", 1), functions=[body])
    model = open_blackbox(_save(proto, tmp_path / "function.onnx"))
    assert model.units == bf.CLASSES

    loop = helper.make_function("local.fn", "Passthrough", ["x"], ["y"],
                                [helper.make_node("Passthrough", ["x"], ["y"], domain="local.fn")],
                                [helper.make_opsetid("", 17), helper.make_opsetid("local.fn", 1)])
    proto = _with_node(exports, helper.make_node("Passthrough", [], [], domain="local.fn"),
                       helper.make_opsetid("local.fn", 1), functions=[loop])
    _refused(_save(proto, tmp_path / "recursive.onnx"), "its function 'Passthrough' calls itself")


def test_onnx_from_a_newer_onnx_says_so(exports, tmp_path):
    proto = bf.onnx_nchw_graph(exports.keras_model)
    proto.ir_version = onnx.IR_VERSION + 1
    text = _refused(_save(proto, tmp_path / "future.onnx"), "was written by a newer ONNX", unsafe=False)
    assert "update onnxruntime" in text


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "text"])
def test_broken_onnx_is_one_line(exports, tmp_path, damage):
    data = bf.onnx_nchw_graph(exports.keras_model).SerializeToString()
    content = {"garbage": np.random.default_rng(0).bytes(4096), "truncated": data[: len(data) // 2],
               "empty": b"", "text": b"this is not a model\n"}[damage]
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    phrase = "is empty" if damage == "empty" else "is not an ONNX model"
    _refused(path, phrase, unsafe=False)


# ------------------------------------------------------------------ TFLite

@pytest.mark.parametrize("damage", ["garbage", "truncated", "header_only", "empty"])
def test_broken_tflite_is_one_line(exports, tmp_path, damage):
    data = exports.tflite.read_bytes()
    content = {"garbage": np.random.default_rng(0).bytes(4096), "truncated": data[: len(data) // 3],
               "header_only": data[:8], "empty": b""}[damage]
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError) as error:
        open_blackbox(path)
    text = _one_line(error)
    assert not isinstance(error.value, UnsafeModelError)
    assert any(phrase in text for phrase in ("is not a TensorFlow Lite model", "is not a valid TensorFlow Lite model",
                                             "is empty", "Cannot open model broken.tflite")), text


def _convert(function, path: Path, **options) -> Path:
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    for key, value in options.items():
        setattr(converter, key, value)
    path.write_bytes(converter.convert())
    return path


def test_tflite_custom_operator_is_refused(tmp_path, no_runtimes):
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def digamma(x):  # no TFLite built-in: allow_custom_ops writes it as the custom operator 'Digamma'
        return tf.reduce_mean(tf.math.digamma(x + 1.0), axis=[1, 2])

    path = _convert(digamma, tmp_path / "custom.tflite", allow_custom_ops=True)
    _refused(path, "uses the custom operator 'Digamma'")


def test_tflite_flex_operator_reading_a_file_is_refused(tmp_path, no_runtimes):
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def reader(x):
        data = tf.io.read_file(tf.strings.join([tf.constant("/etc/"), tf.constant("hostname")]))
        return tf.reduce_mean(x, axis=[1, 2]) + tf.cast(tf.strings.length(data), tf.float32)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([reader.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "flex.tflite"
    path.write_bytes(converter.convert())
    _refused(path, "runs the TensorFlow operation 'ReadFile' through the Flex delegate")


def _rewritten_tflite(source: Path, path: Path, edit) -> Path:
    """``source`` unpacked with TensorFlow's own flatbuffer classes, edited, packed again."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(source.read_bytes(), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def test_tflite_graph_the_interpreter_would_crash_on_is_refused(exports, tmp_path, no_runtimes):
    # The interpreter trusts a graph's wiring: an operator reading a tensor that a later operator
    # computes, or a constant shorter than its shape, reads unallocated memory (a segfault when tried).
    def read_later(model):
        operators = model.subgraphs[0].operators
        inputs = np.array(operators[-2].inputs)  # numpy views of the file: copied to edit
        inputs[0] = operators[-1].outputs[0]
        operators[-2].inputs = inputs

    def short_constant(model):
        tensor = next(t for t in model.subgraphs[0].tensors if model.buffers[t.buffer].data is not None
                      and len(model.buffers[t.buffer].data) > 64)
        model.buffers[tensor.buffer].data = model.buffers[tensor.buffer].data[:64]

    path = _rewritten_tflite(exports.tflite, tmp_path / "later.tflite", read_later)
    _refused(path, "which nothing computed before it", unsafe=False)
    path = _rewritten_tflite(exports.tflite, tmp_path / "short.tflite", short_constant)
    _refused(path, "data is not the size of its shape", unsafe=False)


def test_tflite_repacked_unchanged_opens(exports, tmp_path):  # the rewriting above is not what is refused
    model = open_blackbox(_rewritten_tflite(exports.tflite, tmp_path / "same.tflite", lambda model: None))
    x = bf.model_inputs(2)
    np.testing.assert_allclose(model.predict(x), np.asarray(exports.keras_model(x)), rtol=0, atol=1e-5)


def test_tflite_opcode_patched_to_custom_is_refused(exports, tmp_path, no_runtimes):
    def to_custom(model):
        model.operatorCodes[0].builtinCode = model.operatorCodes[0].deprecatedBuiltinCode = 32  # CUSTOM
        model.operatorCodes[0].customCode = "Exfiltrate"

    _refused(_rewritten_tflite(exports.tflite, tmp_path / "patched.tflite", to_custom),
             "uses the custom operator 'Exfiltrate'")


# ------------------------------------------------------------------ SavedModel

class FileReader(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    def __call__(self, x):
        data = tf.io.read_file("/etc/hostname")
        return tf.reduce_mean(x, axis=[1, 2]) + tf.cast(tf.strings.length(data), tf.float32)


def test_savedmodel_reading_a_file_is_refused_before_loading(tmp_path, no_runtimes):
    module = FileReader()
    path = tmp_path / "reader"
    tf.saved_model.save(module, str(path), signatures=module.__call__)
    assert not (path / "keras_metadata.pb").exists()
    text = _refused(path, "runs the TensorFlow operation 'ReadFile'")
    assert "in function '" in text
    with pytest.raises(UnsafeModelError) as error:  # the graph file named instead of its folder
        open_blackbox(path / "saved_model.pb")
    assert _one_line(error) == text


def test_savedmodel_signature_choice(tmp_path):
    class TwoHeads(tf.Module):
        def __init__(self):
            super().__init__()
            self.scale = tf.Variable(tf.ones([3, 4]))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def first(self, x):
            return {"scores": tf.reduce_mean(x, axis=[1, 2]) @ self.scale}

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def second(self, x):
            return {"scores": tf.reduce_max(x, axis=[1, 2]) @ self.scale, "extra": tf.reduce_min(x, axis=[1, 2])}

    module = TwoHeads()
    path = tmp_path / "heads"
    tf.saved_model.save(module, str(path), signatures={"first": module.first, "second": module.second})
    _refused(path, "has 2 signatures ('first', 'second') and none is 'serving_default'", unsafe=False)
    sidecar = tmp_path / "heads.gradcam.json"
    sidecar.write_text('{"signature": "second"}', encoding="utf-8")
    _refused(path, "has 2 outputs ('extra', 'scores')", unsafe=False)
    sidecar.write_text('{"signature": "second", "output": "scores"}', encoding="utf-8")
    model = open_blackbox(path)
    assert (model.output_name, model.units, model.input_size, model.outputs) == ("scores", 4, (8, 8), "scores")
    x = np.random.default_rng(2).random((3, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), x.max(axis=(1, 2)) @ np.ones((3, 4)), rtol=1e-6)
    sidecar.write_text('{"signature": "third"}', encoding="utf-8")
    _refused(path, "has no signature 'third'", unsafe=False)


def test_real_keras_export_passes_the_operation_check(exports):
    from gradcam_desktop.core.serving_model import check_serving

    key, signature, tags = check_serving(exports.savedmodel, "exported")
    assert key == "serving_default" and "serve" in tags
    assert list(signature.inputs) and list(signature.outputs) == ["output_0"]
