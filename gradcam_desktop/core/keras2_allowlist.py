"""What a Keras 2 (tf.keras / ``tf_keras``) model config may name: Keras 2's own layers, models,
initializers, regularizers, constraints and activations, and the TensorFlow functions a functional
model may call (TFOpLambda) — nothing else.

Each ``{"class_name": ...}`` object is resolved the way tf_keras' loaders would resolve it —
``module``/``registered_name`` in a .keras file (``serialization_lib._retrieve_class_or_fn``),
the class name alone in an .h5 file or a SavedModel's Keras metadata (``legacy.serialization``,
looked up in the tables its deserializers use) — and the object it lands on must be a building block
defined inside tf_keras (or one of TensorFlow's own initializers, which tf.keras 2.x wrote into
EfficientNetV2 files). A TFOpLambda names a TensorFlow API function that tf_keras looks up by name:
only math, neural-network and array functions may be named, never file, I/O or Python-callback ones.
"""

from __future__ import annotations

import importlib
import sys
from functools import lru_cache
from typing import Any

from . import allowlist
from .allowlist import Verdict

_PACKAGE = "tf_keras"
#: TensorFlow API namespaces whose every function is tensor math (no files, no Python callbacks).
_OP_NAMESPACES = ("math.", "nn.", "__operators__.", "linalg.", "signal.", "bitwise.")
#: Top-level and image functions a functional model calls on tensors (tf.reshape(x, …), …).
_OP_FUNCTIONS = frozenset({
    "abs", "add", "add_n", "argmax", "argmin", "boolean_mask", "broadcast_to", "cast", "clip_by_value",
    "concat", "cos", "cumsum", "divide", "einsum", "equal", "exp", "expand_dims", "eye", "fill", "gather",
    "gather_nd", "greater", "greater_equal", "identity", "less", "less_equal", "linspace", "logical_and",
    "logical_not", "logical_or", "matmul", "maximum", "minimum", "multiply", "negative", "norm", "not_equal",
    "one_hot", "ones", "ones_like", "pad", "pow", "range", "rank", "realdiv", "reduce_all", "reduce_any",
    "reduce_max", "reduce_mean", "reduce_min", "reduce_prod", "reduce_sum", "repeat", "reshape", "reverse",
    "roll", "round", "rsqrt", "shape", "sigmoid", "sign", "sin", "size", "slice", "split", "sqrt", "square",
    "squeeze", "stack", "stop_gradient", "strided_slice", "subtract", "tanh", "tensordot", "tile",
    "transpose", "truediv", "unstack", "where", "zeros", "zeros_like", "compat.v1.transpose",
    "image.resize", "image.resize_with_pad", "image.resize_with_crop_or_pad", "image.central_crop",
    "image.per_image_standardization", "image.rgb_to_grayscale", "image.grayscale_to_rgb",
    "image.convert_image_dtype", "image.extract_patches", "nn.depth_to_space", "nn.space_to_depth",
})
#: tf_keras layers that call a method or read an attribute of a tensor by a name in the file.
_NOT_BLOCKS = ("ClassMethod", "InstanceMethod", "InstanceProperty")
#: Keras 2 layers that load a model from elsewhere (TensorFlow Hub's KerasLayer is one).
FOREIGN = {"KerasLayer": "wraps a TensorFlow Hub model whose layers Grad-CAM cannot see (and which "
                         "may run arbitrary TensorFlow ops)"}


def allowed_op_function(symbol: Any) -> bool:
    """True for a TensorFlow API function a Keras 2 TFOpLambda may call."""
    if not isinstance(symbol, str):
        return False
    name = symbol.removeprefix("compat.v2.")
    if name in _OP_FUNCTIONS:
        return True
    namespace, _, function = name.partition(".")
    return namespace + "." in _OP_NAMESPACES and bool(function) and "." not in function


@lru_cache(maxsize=1)
def _tables() -> dict[str, Any]:
    import tensorflow as tf  # noqa: F401 - tf_keras needs it loaded
    import tf_keras  # noqa: F401 - registers its exports
    from tensorflow.python.ops import init_ops_v2
    from tf_keras.src import activations, constraints, initializers, regularizers
    from tf_keras.src.engine.base_layer import Layer
    from tf_keras.src.layers import serialization as layer_serialization
    from tf_keras.src.layers.core import lambda_layer

    layer_serialization.populate_deserializable_objects()
    initializers.populate_deserializable_objects()
    from tf_keras.src.initializers import LOCAL as initializer_table
    from tf_keras.src.layers.serialization import LOCAL as layer_table

    from .keras2 import application_objects

    functions: dict[str, Any] = {}
    for name, obj in vars(activations).items():
        if callable(obj) and getattr(obj, "__module__", "") == activations.__name__:
            functions[name] = obj
    return {
        "legacy": (dict(layer_table.ALL_OBJECTS), application_objects(), dict(initializer_table.ALL_OBJECTS), functions,
                   dict(vars(regularizers)), dict(vars(constraints))),
        "layer": Layer,
        "lambda": lambda_layer.Lambda,
        "blocks": (Layer, initializers.Initializer, regularizers.Regularizer, constraints.Constraint),
        "tf_initializer": init_ops_v2.Initializer,
        "activations": activations.__name__,
    }


def _judge(obj: Any, label: str, node: dict) -> Verdict:
    if allowlist.is_trusted(obj):  # registered by a Python file the user chose to trust
        return Verdict("ok", label)
    tables = _tables()
    if obj is tables["lambda"]:
        return Verdict("code", label)
    name = getattr(obj, "__name__", "")
    if name in FOREIGN:
        return Verdict("foreign", name)
    module = str(getattr(obj, "__module__", ""))
    if isinstance(obj, type):
        if module.startswith(_PACKAGE + ".") and issubclass(obj, tables["blocks"]):
            if name in _NOT_BLOCKS:
                return Verdict("keras", f"{name} (calls a tensor method named in the file)")
            if issubclass(obj, tables["layer"]) and name in ("TFOpLambda", "SlicingOpLambda"):
                config = node.get("config")
                symbol = config.get("function") if isinstance(config, dict) else None
                if not allowed_op_function(symbol):
                    return Verdict("keras", f"tf.{symbol}")
            return Verdict("ok", label)
        if module == "tensorflow.python.ops.init_ops_v2" and issubclass(obj, tables["tf_initializer"]):
            return Verdict("ok", label)
        return Verdict("custom", f"class '{name}' from module '{module}'")
    if callable(obj) and module == tables["activations"]:
        return Verdict("ok", label)
    if module.split(".")[0] not in ("tf_keras", "keras", "tensorflow"):  # e.g. registered by other code
        return Verdict("custom", f"function '{name}' from module '{module}'")
    return Verdict("keras", label)


def judge(node: dict) -> Verdict:
    """Resolve one ``{"class_name": ...}`` object of a Keras 2 config as tf_keras would, then
    judge it (the same verdicts as allowlist.judge)."""
    from tf_keras.src.saving import object_registration

    cls = node["class_name"]
    is_function = cls == "function"
    name = node.get("config") if is_function else cls
    if not isinstance(name, str):
        return Verdict("custom", f"function {name!r}")
    registered = node.get("registered_name") or cls
    if cls in FOREIGN:
        return Verdict("foreign", cls)
    key = name if is_function else registered
    found = object_registration.get_registered_object(key) if isinstance(key, str) else None
    if found is not None:  # registered in this process: tf_keras looks there first
        return _judge(found, str(key), node)
    if "module" not in node:
        return _judge_legacy(name, node)
    module = node["module"]
    if not isinstance(module, str):
        return Verdict("custom", f"custom class '{cls}'")
    if module == "builtins" and is_function:
        from tensorflow.python.util import tf_export

        for kind in ("activations",):  # layer configs only name activation functions
            obj = tf_export.get_symbol_from_name(f"keras.{kind}.{name}")
            if obj is not None:
                return _judge(obj, f"keras.{kind}.{name}", node)
        return Verdict("custom", f"Python function '{name}'")
    label = f"{module}.{name}"
    if module in ("keras", _PACKAGE) or module.startswith(("keras.", _PACKAGE + ".")):
        from tensorflow.python.util import tf_export

        obj = tf_export.get_symbol_from_name(label)
        if obj is not None:
            return _judge(obj, label, node)
        real = _PACKAGE + module[len("keras"):] if module.startswith("keras") else module
        try:  # tf_keras imports the module named in the file; only its own modules come here
            obj = vars(importlib.import_module(real)).get(name)
        except ImportError:
            obj = None
        return Verdict("unknown", label) if obj is None else _judge(obj, label, node)
    if module == "tensorflow.python.ops.init_ops_v2":
        loaded = sys.modules.get(module)
        obj = vars(loaded).get(name) if loaded is not None else None
        return Verdict("unknown", label) if obj is None else _judge(obj, label, node)
    what = f"function '{name}'" if is_function else f"class '{cls}'"
    return Verdict("custom", f"{what} from module '{module}'")


def _judge_legacy(name: str, node: dict) -> Verdict:
    """Legacy configs name objects only by class; every table that knows the name counts."""
    found = [table[name] for table in _tables()["legacy"] if name in table]
    if not found:
        return Verdict("unknown", name)
    verdicts = [_judge(obj, name, node) for obj in found]
    return next((v for v in verdicts if v.kind != "ok"), verdicts[0])
