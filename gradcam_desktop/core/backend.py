"""Which Keras built a model — Keras 3 (``keras``) or Keras 2 (``tf_keras``) — and the few things the
engine must do differently for each.

Models trained with TensorFlow 2.0–2.15 are Keras 2 models (``tf.keras``, today the ``tf_keras``
package). They are loaded and run by Keras 2 itself: its layers (TFOpLambda, DepthwiseConv2D's
``groups``, names with ``/``) and formats (SavedModel folders) exist only there, and running a
Keras 2 model through Keras 3 would change what the model computes. Everything above this module —
the layer tree, the compiled capture, the methods, trust, triage — takes a model and asks here:

    keras_of(obj)                   the package whose classes ``obj`` is made of (for isinstance checks)
    is_operation(op)                a function called in the graph (keras.ops, Keras 2's TFOpLambda)
    walk_functional(model, x, call) run a functional model's graph, each layer call through ``call``
    expects_training(layer)         whether to pass ``training=False`` (BatchNorm, Dropout)
    clone_model(model)              a structural copy (the sanity check re-draws its weights)

``tf_keras`` is imported only when a Keras 2 model is opened: a Keras 3 user never pays for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

KERAS2_PACKAGE = "tf_keras"


_KERAS2_TYPES: dict[type, bool] = {}


def _is_keras2_type(cls: type) -> bool:
    known = _KERAS2_TYPES.get(cls)
    if known is None:
        known = _KERAS2_TYPES[cls] = any(base.__module__.split(".", 1)[0] == KERAS2_PACKAGE for base in cls.__mro__)
    return known


def is_keras2(obj: Any) -> bool:
    """True when ``obj`` (a model, layer or tensor) is made of Keras 2 (``tf_keras``) classes."""
    return KERAS2_PACKAGE in sys.modules and _is_keras2_type(type(obj))


def keras_of(obj: Any) -> ModuleType:
    """The Keras package ``obj`` belongs to: ``tf_keras`` for Keras 2 objects, else ``keras``."""
    if is_keras2(obj):
        return sys.modules[KERAS2_PACKAGE]
    import keras

    return keras


def keras_name(obj: Any) -> str:
    """"Keras 2" or "Keras 3", for messages and --json."""
    return "Keras 2" if is_keras2(obj) else "Keras 3"


def is_graph_model(model: Any) -> bool:
    """True for a Functional/Sequential model whose graph can be walked layer by layer (subclassed
    models have no graph: they are treated as opaque layers)."""
    keras = keras_of(model)
    if not isinstance(model, keras.Model) or not hasattr(model, "layers"):
        return False
    if isinstance(model, keras.Sequential):
        return True
    if is_keras2(model):
        return bool(getattr(model, "_is_graph_network", False))
    return hasattr(model, "_run_through_graph")


def is_operation(op: Any) -> bool:
    """A function called in a functional graph rather than a layer: a Keras 3 operation
    (``keras.ops.softmax`` becomes an operation named Softmax) or a Keras 2 TFOpLambda
    (``tf.nn.softmax``, ``x / 127.5``; its ``symbol`` names the TensorFlow function)."""
    if is_keras2(op):
        return isinstance(getattr(op, "symbol", None), str)
    return not isinstance(op, keras_of(op).layers.Layer)


def expects_training(layer: Any) -> bool:
    """Whether ``layer.call`` takes ``training`` (then the engine passes False: inference behaviour
    for BatchNorm and Dropout whatever the framework's global phase is)."""
    if is_keras2(layer):
        return bool(getattr(layer, "_expects_training_arg", False))
    return bool(getattr(layer, "_call_has_training_arg", False))


def walk_functional(model: Any, inputs: Any, call: Callable[..., Any]) -> Any:
    """Run a functional model's graph on ``inputs``; every layer call goes through
    ``call(layer, args, kwargs)``. A single output comes back as a tensor, not a one-element list
    (configs written by tf.keras declare their outputs as a list)."""
    if is_keras2(model):
        outputs = _walk_keras2(model, inputs, call)
    else:
        outputs = model._run_through_graph(  # noqa: SLF001 - the one graph walker Keras 3 offers
            inputs, operation_fn=lambda op: (lambda *args, **kwargs: call(op, args, kwargs)))
    while isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    return outputs


def _walk_keras2(model: Any, inputs: Any, call: Callable[..., Any]) -> Any:
    """Keras 2's ``Functional._run_internal_graph`` with each layer call handed to ``call``.

    Keras 2 offers no hook into its graph walk, so this is its loop, written against tf_keras'
    Functional internals (``_nodes_by_depth``, ``Node.map_arguments``); pyproject.toml pins
    tf_keras below the next minor version for that reason, and the Keras 2 tests exercise it.
    """
    import tensorflow as tf

    # noqa comments below: these are tf_keras' own graph structures, read as its loop reads them.
    flat = model._flatten_to_reference_inputs(inputs)  # noqa: SLF001
    usage = model._tensor_usage_count  # noqa: SLF001
    tensors: dict[str, list] = {}
    for reference, value in zip(model.inputs, flat):
        value = model._conform_to_reference_input(value, ref_input=reference)  # noqa: SLF001
        tensors[str(id(reference))] = [value] * usage[str(id(reference))]
    by_depth = model._nodes_by_depth  # noqa: SLF001
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.is_input or any(key not in tensors for key in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            outputs = call(node.layer, tuple(args), dict(kwargs))
            for key, value in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[key] = [value] * usage[key]
    results = [tensors[str(id(output))].pop() for output in model.outputs]
    return tf.nest.pack_sequence_as(model._nested_outputs, results)  # noqa: SLF001


def clone_model(model: Any) -> Any:
    """A copy of ``model``'s structure with fresh variables (weights are set by the caller)."""
    return keras_of(model).models.clone_model(model)
