"""Every private Keras 3, Keras 2 (tf_keras) and TensorFlow name the engine relies on, one test each.

pyproject.toml pins Keras and tf_keras below their next minor version because of these names. When
an upgrade is tried, the failing test says which name changed and which of our modules uses it —
in CI, never silently at a user's. A name added to the engine gets a line here.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

#: (module, attribute path, who uses it)
MODULE_NAMES = [
    # Keras 3
    ("keras.src.api_export", "REGISTERED_NAMES_TO_OBJS", "allowlist._tables"),
    ("keras.src.api_export", "get_symbol_from_name", "allowlist._exported"),
    ("keras.src.saving.object_registration", "get_registered_object", "allowlist.judge, hub"),
    ("keras.src.saving.serialization_lib", "NON_MODELING_APIS", "allowlist.judge"),
    ("keras.src.saving.serialization_lib", "BUILTIN_MODULES", "allowlist.judge"),
    ("keras.src.saving.serialization_lib", "SafeModeScope", "footprint.measure"),
    ("keras.src.saving.serialization_lib", "ObjectSharingScope", "footprint._deserialize"),
    ("keras.src.saving.serialization_lib", "deserialize_keras_object", "footprint._deserialize"),
    ("keras.src.saving.keras_saveable", "KerasSaveable", "allowlist.judge"),
    ("keras.src.ops.operation", "Operation", "allowlist._tables"),
    ("keras.src.models", "Functional", "allowlist._tables"),
    ("keras.src.activations", "ALL_OBJECTS_DICT", "allowlist._tables"),
    ("keras.src.initializers", "ALL_OBJECTS_DICT", "allowlist._tables"),
    ("keras.src.regularizers", "ALL_OBJECTS_DICT", "allowlist._tables"),
    ("keras.src.constraints", "ALL_OBJECTS_DICT", "allowlist._tables"),
    ("keras.src.dtype_policies", "ALL_OBJECTS_DICT", "allowlist._tables"),
    ("keras.src.backend.common.global_state", "get_global_attribute", "footprint.measure"),
    ("keras.src.backend.common.global_state", "set_global_attribute", "footprint.measure"),
    ("keras.src.legacy.saving.json_utils", "decode", "footprint._deserialize"),
    ("keras.src.legacy.saving.saving_options", "keras_option_scope", "footprint._deserialize"),
    ("keras.src.legacy.saving.saving_utils", "model_from_config", "footprint._deserialize"),
    # Keras 2
    ("tf_keras.src.engine.base_layer", "Layer", "keras2_allowlist._tables"),
    ("tf_keras.src.layers.serialization", "populate_deserializable_objects", "keras2_allowlist._tables"),
    ("tf_keras.src.layers.serialization", "LOCAL", "keras2_allowlist._tables"),
    ("tf_keras.src.initializers", "populate_deserializable_objects", "keras2_allowlist._tables"),
    ("tf_keras.src.initializers", "LOCAL", "keras2_allowlist._tables"),
    ("tf_keras.src.layers.core.lambda_layer", "Lambda", "keras2_allowlist._tables"),
    ("tf_keras.src.saving.object_registration", "get_registered_object", "keras2_allowlist.judge"),
    ("tf_keras.src.saving.serialization_lib", "SafeModeScope", "keras2.load, footprint"),
    ("tf_keras.src.saving.serialization_lib", "deserialize_keras_object", "footprint._measure_keras2, keras2"),
    ("tf_keras.src.saving.serialization_lib", "ObjectSharingScope", "keras2._load_keras_zip"),
    ("tf_keras.src.saving.legacy.model_config", "model_from_config", "footprint._measure_keras2"),
    ("tf_keras.src.saving.legacy.saved_model.json_utils", "decode", "footprint._measure_keras2"),
    ("tf_keras.src.applications.convnext", "LayerScale", "keras2.application_objects"),
    ("tf_keras.src.applications.convnext", "StochasticDepth", "keras2.application_objects"),
    ("tf_keras.protobuf.saved_metadata_pb2", "SavedMetadata", "savedmodel._keras_metadata"),
    # TensorFlow
    ("tensorflow.python.util.tf_export", "get_symbol_from_name", "keras2_allowlist.judge"),
    ("tensorflow.python.ops.init_ops_v2", "Initializer", "keras2_allowlist._tables"),
    ("tensorflow.core.protobuf.saved_model_pb2", "SavedModel", "savedmodel._parse_saved_model"),
]


@pytest.mark.parametrize(("module", "name", "user"), MODULE_NAMES, ids=[f"{m}.{n}" for m, n, _ in MODULE_NAMES])
def test_private_module_name_exists(module, name, user):
    imported = importlib.import_module(module)
    assert hasattr(imported, name), f"{module}.{name} is gone: {user} relies on it"


def _keras3_model():
    import keras

    inputs = keras.Input((8, 8, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")
    x = keras.layers.BatchNormalization(name="bn")(shared(inputs))
    y = keras.layers.Add(name="add")([x, keras.layers.Conv2D(4, 1, name="side")(inputs)])
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return keras.Model(inputs, [keras.layers.Dense(3, name="logits")(y)])


def _keras2_model():
    import tf_keras

    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = tf_keras.layers.BatchNormalization(name="bn")(x)
    x = x * 2.0 + 1.0  # two TFOpLambda layers, one with a constant argument
    y = tf_keras.layers.Add(name="add")([x, tf_keras.layers.Conv2D(4, 1, name="side")(inputs)])
    y = tf_keras.layers.GlobalAveragePooling2D(name="gap")(y)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(3, name="logits")(y))


KERAS3_ATTRIBUTES = [
    ("Functional._run_through_graph", lambda m: m._run_through_graph, "backend.walk_functional"),  # noqa: SLF001
    ("Layer._inbound_nodes[-1].outputs", lambda m: m.get_layer("gap")._inbound_nodes[-1].outputs,  # noqa: SLF001
     "layers.output_shape"),
    ("Node.output_tensors", lambda m: m.get_layer("gap")._inbound_nodes[-1].output_tensors,  # noqa: SLF001
     "footprint._activation_bytes"),
    ("Layer._call_has_training_arg", lambda m: m.get_layer("bn")._call_has_training_arg,  # noqa: SLF001
     "backend.expects_training"),
    ("Layer._flatten_layers", lambda m: m._flatten_layers, "layers._mixes_tokens"),  # noqa: SLF001
    ("Model._layers", lambda m: m._layers, "footprint._activation_bytes"),  # noqa: SLF001
    ("KerasTensor._keras_history", lambda m: m.outputs[0]._keras_history, "heads.final_operation"),  # noqa: SLF001
]

KERAS2_ATTRIBUTES = [
    ("Functional._flatten_to_reference_inputs", lambda m: m._flatten_to_reference_inputs,  # noqa: SLF001
     "backend._walk_keras2"),
    ("Functional._tensor_usage_count", lambda m: m._tensor_usage_count, "backend._walk_keras2"),  # noqa: SLF001
    ("Functional._conform_to_reference_input", lambda m: m._conform_to_reference_input,  # noqa: SLF001
     "backend._walk_keras2"),
    ("Functional._nodes_by_depth", lambda m: m._nodes_by_depth, "backend._walk_keras2"),  # noqa: SLF001
    ("Functional._nested_outputs", lambda m: m._nested_outputs, "backend._walk_keras2"),  # noqa: SLF001
    ("Functional._is_graph_network", lambda m: m._is_graph_network, "backend.is_graph_model"),  # noqa: SLF001
    ("Node.map_arguments/flat_input_ids/flat_output_ids/is_input/layer",
     lambda m: [(n.map_arguments, n.flat_input_ids, n.flat_output_ids, n.is_input, n.layer)
                for nodes in m._nodes_by_depth.values() for n in nodes], "backend._walk_keras2"),  # noqa: SLF001
    ("Layer._expects_training_arg", lambda m: m.get_layer("bn")._expects_training_arg,  # noqa: SLF001
     "backend.expects_training"),
    ("Layer._inbound_nodes[-1].outputs", lambda m: m.get_layer("gap")._inbound_nodes[-1].outputs,  # noqa: SLF001
     "layers.output_shape"),
    ("Node.output_tensors", lambda m: m.get_layer("gap")._inbound_nodes[-1].output_tensors,  # noqa: SLF001
     "footprint._activation_bytes"),
    ("TFOpLambda.symbol", lambda m: [layer.symbol for layer in m.layers if type(layer).__name__ == "TFOpLambda"],
     "backend.is_operation, heads"),
    ("KerasTensor._keras_history", lambda m: m.outputs[0]._keras_history, "heads.final_operation"),  # noqa: SLF001
]


@pytest.fixture(scope="module")
def models():
    return {"keras3": _keras3_model(), "keras2": _keras2_model()}


@pytest.mark.parametrize(("what", "read", "user"), KERAS3_ATTRIBUTES, ids=[a for a, _, _ in KERAS3_ATTRIBUTES])
def test_keras3_private_attribute(models, what, read, user):
    try:
        value = read(models["keras3"])
    except (AttributeError, IndexError) as error:
        pytest.fail(f"Keras 3's {what} is gone ({error}): {user} relies on it")
    assert value is not None, f"Keras 3's {what} is None: {user} relies on it"


@pytest.mark.parametrize(("what", "read", "user"), KERAS2_ATTRIBUTES, ids=[a for a, _, _ in KERAS2_ATTRIBUTES])
def test_keras2_private_attribute(models, what, read, user):
    try:
        value = read(models["keras2"])
    except (AttributeError, IndexError) as error:
        pytest.fail(f"Keras 2's {what} is gone ({error}): {user} relies on it")
    empty = value is None or (isinstance(value, list) and not value)
    assert not empty, f"Keras 2's {what} is empty: {user} relies on it"


@pytest.mark.parametrize("which", ["keras3", "keras2"])
def test_graph_walk_computes_what_the_framework_computes(models, which):
    """The walk through those internals, each layer called as the framework calls it, gives the
    model's own output (a shared layer, a merge, TFOpLambdas with constants, a one-element output list).
    Same operations in the same order on the same inputs: equal up to float32 reassociation in fused
    kernels, a few ulps of the outputs' magnitude."""
    from gradcam_desktop.core.backend import walk_functional

    model = models[which]
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    walked = np.asarray(walk_functional(model, x, lambda layer, args, kwargs: layer(*args, **kwargs)))
    expected = np.asarray(model(x, training=False))
    expected = expected[0] if expected.ndim == 3 else expected  # Keras 3 keeps the declared list
    assert walked.shape == expected.shape == (2, 3)
    np.testing.assert_allclose(walked, expected, rtol=0, atol=64 * np.finfo(np.float32).eps * np.abs(expected).max())
