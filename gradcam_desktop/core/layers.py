"""The layer tree of a Keras model: nested models inlined, eligibility for Grad-CAM, default layer.

Layer paths name nested layers as ``outer/inner`` (Keras forbids ``/`` in layer names, so the
separator is unambiguous).
"""

from __future__ import annotations

from collections.abc import Iterator

import keras

from .errors import LayerError
from .types import LayerNode

SEPARATOR = "/"


def is_submodel(layer) -> bool:
    """True for a nested Functional/Sequential model whose layers we can inline."""
    return isinstance(layer, keras.Model) and hasattr(layer, "layers") and _has_graph(layer)


def _has_graph(model) -> bool:
    # Subclassed models have no graph we can walk; they are treated as opaque layers.
    return isinstance(model, keras.Sequential) or hasattr(model, "_run_through_graph")


def child_layers(model) -> list:
    """The model's own layers, without InputLayers (which only hold the input)."""
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def output_shape(layer) -> tuple:
    """The layer's symbolic output shape, or ``()`` when Keras cannot tell.

    For a layer called more than once (shared weights) this is its last call's output, the one
    graph.py maps (Keras' ``layer.output`` would give the first).
    """
    nodes = getattr(layer, "_inbound_nodes", None) or []
    try:
        output = nodes[-1].outputs if nodes else layer.output
    except (AttributeError, ValueError):
        return ()
    if isinstance(output, (list, tuple)):
        if len(output) != 1:
            return ()
        output = output[0]
    return tuple(output.shape)


def is_eligible_shape(shape: tuple) -> bool:
    """A map needs a 4-D output (batch, H, W, C) whose grid is bigger than 1 × 1."""
    if len(shape) != 4:
        return False
    height, width = shape[1], shape[2]
    return all(side is None or side > 1 for side in (height, width))


def layer_tree(model, prefix: str = "") -> list[LayerNode]:
    """Build the tree of every layer; nested models become subtrees."""
    nodes = []
    for layer in child_layers(model):
        path = prefix + layer.name
        shape = output_shape(layer)
        node = LayerNode(
            path=path,
            name=layer.name,
            type=type(layer).__name__,
            output_shape=shape,
            eligible=is_eligible_shape(shape),
        )
        if is_submodel(layer):
            node.children = layer_tree(layer, path + SEPARATOR)
        nodes.append(node)
    return nodes


def iter_layers(nodes: list[LayerNode]) -> Iterator[LayerNode]:
    """Depth-first, parents before children: the order layers run in."""
    for node in nodes:
        yield node
        yield from iter_layers(node.children)


def eligible_paths(model) -> list[str]:
    """Every layer a map can be taken at, in execution order."""
    return [node.path for node in iter_layers(layer_tree(model)) if node.eligible]


def default_layer(model) -> str:
    """The last eligible layer: the usual Grad-CAM choice (deepest spatial features).

    Never a 1 × 1 logit convolution: those have no spatial grid and are not eligible (the
    MobileNetV3 trap, where the classifier is a 1 × 1 convolution after pooling). A nested
    model's own node is skipped in favour of its last inner layer, which has the same output.
    """
    candidates = [
        node for node in iter_layers(layer_tree(model)) if node.eligible and not node.children
    ]
    if not candidates:
        raise LayerError(
            "This model has no layer with a spatial map (a 4-D output larger than 1 × 1), "
            "so Grad-CAM cannot be shown. Is it an image classifier with convolutions?"
        )
    return candidates[-1].path


def resolve(model, path: str):
    """The layer object at ``path``; LayerError listing eligible layers when unknown."""
    current = model
    for name in path.split(SEPARATOR):
        if not is_submodel(current):
            current = None
            break
        current = next((layer for layer in child_layers(current) if layer.name == name), None)
        if current is None:
            break
    if current is None or current is model:
        nested = [p for p in eligible_paths(model) if p.endswith(SEPARATOR + path)]
        if nested:
            raise LayerError(f"No layer '{path}' at the top of this model; did you mean '{nested[0]}'? "
                             "Layers inside nested models are named outer/inner.")
        raise LayerError(f"No layer '{path}' in this model. {_eligible_hint(model)}")
    return current


def check_eligible(model, path: str):
    """Resolve ``path`` and make sure a map can be taken there."""
    layer = resolve(model, path)
    shape = output_shape(layer)
    if not is_eligible_shape(shape):
        raise LayerError(
            f"Layer '{path}' has output shape {shape}, which has no spatial grid for a map. "
            f"{_eligible_hint(model)}"
        )
    return layer


def _eligible_hint(model, limit: int = 12) -> str:
    paths = eligible_paths(model)
    if not paths:
        return "This model has no eligible layer."
    shown = ", ".join(paths[-limit:])
    more = f" (last {limit} of {len(paths)}; `gradcam layers` lists all)" if len(paths) > limit else ""
    return f"Eligible layers: {shown}{more}."
