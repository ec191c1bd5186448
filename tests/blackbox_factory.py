"""One small Keras classifier exported to the black-box formats, built once per test session.

Routes (all offline): TFLite with ``tf.lite.TFLiteConverter`` (float32, dynamic batch; and a
fully int8-quantized copy with uint8 input/output and a fixed batch of 1), a SavedModel with Keras
3's ``model.export(folder)``, ONNX with Keras 3's ``model.export(path, format="onnx")`` (which
needs tf2onnx; NHWC input, dynamic batch), and an independent NCHW ONNX graph written with
``onnx.helper`` from the Keras weights (Conv/Relu/MaxPool/GlobalAveragePool/Gemm/Softmax, batch
fixed at 2, weights in an external data file): it exercises layout, fixed-batch padding and
external data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_factory import gap_dense_model

SIZE = (32, 32)
CLASSES = 4
LABELS = ["cat", "dog", "bird", "fish"]
#: Model-space inputs of the tests: values in [0, 1), as after "unit" preprocessing.
HELPER_BATCH = 2


@dataclass
class Exports:
    keras_model: object
    folder: Path
    tflite: Path
    tflite_int8: Path
    savedmodel: Path
    onnx: Path              # Keras' own ONNX export (tf2onnx)
    onnx_nchw: Path         # written with onnx.helper, external data in onnx_nchw_data
    onnx_nchw_data: Path
    onnx_route: str


def model_inputs(count: int, seed: int = 0) -> np.ndarray:
    """Random model-space inputs (N, 32, 32, 3) in [0, 1)."""
    return np.random.default_rng(seed).random((count, *SIZE, 3), dtype=np.float32)


def write_labels(model_path: Path, names=LABELS) -> Path:
    """``<stem>.labels.txt`` next to a model file or folder."""
    path = model_path.with_name(model_path.stem + ".labels.txt")
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def export_tflite(model, path: Path) -> Path:
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def export_tflite_int8(model, path: Path) -> Path:
    """Full-integer quantization, uint8 in and out, fixed batch 1 (the model called on an Input of batch 1)."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((*SIZE, 3), batch_size=1)
    fixed = keras.Model(inputs, model(inputs))

    def representative():
        for image in model_inputs(32, seed=7):
            yield [image[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(fixed)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path.write_bytes(converter.convert())
    return path


def export_onnx_keras(model, path: Path) -> Path:
    """Keras 3's own ONNX export (tf2onnx underneath: the [test] extra installs it, so its absence
    fails the tests that need it rather than skipping them)."""
    model.export(str(path), format="onnx", verbose=False)
    return path


def onnx_nchw_graph(model, *, batch: int | str = HELPER_BATCH, side: int | str = SIZE[0], channels: int | str = 3,
                    classes: int | str = CLASSES, logits_output: bool = False):
    """The gap_dense_model graph written node by node with onnx.helper, NCHW (a ModelProto).

    ``batch``/``side``/``channels``/``classes``: a number, or a name for a dynamic side, as the
    graph declares them; ``logits_output`` adds the pre-softmax logits as a second output."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    current = "image"
    for conv in ("conv1", "pool1", "conv2", "pool2", "last_conv"):
        if conv.startswith("pool"):
            nodes.append(helper.make_node("MaxPool", [current], [conv], kernel_shape=[2, 2], strides=[2, 2]))
            current = conv
            continue
        kernel, bias = (np.asarray(w) for w in model.get_layer("backbone").get_layer(conv).weights)
        initializers += [numpy_helper.from_array(kernel.transpose(3, 2, 0, 1).copy(), f"{conv}_w"),
                         numpy_helper.from_array(bias, f"{conv}_b")]
        nodes.append(helper.make_node("Conv", [current, f"{conv}_w", f"{conv}_b"], [f"{conv}_pre"],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"{conv}_pre"], [conv]))
        current = conv
    kernel, bias = (np.asarray(w) for w in model.get_layer("predictions").weights)
    initializers += [numpy_helper.from_array(kernel, "dense_w"), numpy_helper.from_array(bias, "dense_b")]
    nodes += [helper.make_node("GlobalAveragePool", [current], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["features"]),
              helper.make_node("Gemm", ["features", "dense_w", "dense_b"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, classes])]
    if logits_output:
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes]))
    graph = helper.make_graph(nodes, "gap_dense_nchw",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, channels, side, side])],
                              outputs, initializer=initializers)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx_model.ir_version = 8
    return onnx_model


def write_onnx_nchw(model, path: Path, *, data_file: str | None = "weights.bin", **graph_options) -> Path:
    """onnx_nchw_graph saved at ``path``, its weights in ``data_file`` beside it (None: inline)."""
    import onnx

    proto = onnx_nchw_graph(model, **graph_options)
    onnx.checker.check_model(proto)
    if data_file is None:
        path.write_bytes(proto.SerializeToString())
    else:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_file, size_threshold=0)
    return path


_CACHE: dict[str, Exports] = {}


def build_exports(tmp_path_factory) -> Exports:
    """Every export, once per session (shared by the test modules that ask)."""
    if "exports" in _CACHE:
        return _CACHE["exports"]
    folder = tmp_path_factory.mktemp("blackbox")
    model = gap_dense_model((*SIZE, 3), classes=CLASSES)
    model(model_inputs(1))  # Keras' ONNX export needs a model that has been called
    with warnings.catch_warnings():
        # The converters' own noise: quantization statistics, tf2onnx's NumPy 2 probe of np.object.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
        tflite = export_tflite(model, folder / "float.tflite")
        tflite_int8 = export_tflite_int8(model, folder / "int8.tflite")
        savedmodel = folder / "exported"
        model.export(str(savedmodel), format="tf_saved_model", verbose=False)
        onnx_path = export_onnx_keras(model, folder / "keras.onnx")
    onnx_nchw = write_onnx_nchw(model, folder / "nchw.onnx")
    for path in (tflite, tflite_int8, savedmodel, onnx_path, onnx_nchw):
        write_labels(path)
    _CACHE["exports"] = Exports(model, folder, tflite, tflite_int8, savedmodel, onnx_path, onnx_nchw,
                                folder / "weights.bin", "keras export (tf2onnx)")
    return _CACHE["exports"]
