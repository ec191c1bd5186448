"""The layer tree of a Keras model: nested models inlined, eligibility for Grad-CAM, default layer.

Layer paths name nested layers as ``outer/inner`` (Keras forbids ``/`` in layer names, so the
separator is unambiguous).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import keras

from .backend import is_graph_model, keras_of
from .errors import LayerError
from .types import LayerNode

SEPARATOR = "/"


def is_submodel(layer) -> bool:
    """True for a nested Functional/Sequential model whose layers we can inline."""
    return is_graph_model(layer)


def child_layers(model) -> list:
    """The model's own layers, without InputLayers (which only hold the input)."""
    input_layer = keras_of(model).layers.InputLayer
    return [layer for layer in model.layers if not isinstance(layer, input_layer)]


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


# -- Vision Transformers: token layers read as a patch grid ---------------------------------
#: Tokens ahead of the patch tokens that a known patch grid may leave over: a class token, a
#: distillation token (DeiT), register tokens.
MAX_EXTRA_TOKENS = 8


@dataclass(frozen=True)
class TokenGrid:
    """How a (batch, tokens, D) output reads as a (batch, height, width, D) map: drop the first
    ``prefix`` tokens (class token(s)), reshape the rest row by row (pytorch-grad-cam's
    ``reshape_transform``)."""

    prefix: int
    height: int
    width: int

    def to_grid(self, tokens):
        """(N, T, D) tensor → (N, height, width, D)."""
        return keras.ops.reshape(tokens[:, self.prefix:, :], (-1, self.height, self.width, tokens.shape[-1]))


def _all_layers(model) -> Iterator:
    for layer in child_layers(model):
        yield layer
        if is_submodel(layer):
            yield from _all_layers(layer)


def patch_grids(model) -> list[tuple[int, int]]:
    """The model's patch grids: outputs of patch-embedding convolutions (kernel = stride > 1) and
    input size // ``patch_size`` of layers that carry one (KerasHub's patch embedding)."""
    grids: list[tuple[int, int]] = []
    try:
        input_hw = tuple(model.inputs[0].shape[1:3])
    except (AttributeError, IndexError, TypeError, ValueError):
        input_hw = (None, None)
    for layer in _all_layers(model):
        grid = None
        if isinstance(layer, keras_of(layer).layers.Conv2D) and tuple(layer.strides) == tuple(layer.kernel_size) \
                and max(layer.strides) > 1:
            shape = output_shape(layer)
            grid = tuple(shape[1:3]) if len(shape) == 4 else None
        elif getattr(layer, "patch_size", None) and None not in input_hw:
            patch = layer.patch_size
            ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)[:2]
            grid = (input_hw[0] // ph, input_hw[1] // pw)
        if grid and all(isinstance(side, int) and side > 1 for side in grid) and grid not in grids:
            grids.append(grid)
    return grids


def token_grid(shape: tuple, grids: list[tuple[int, int]]) -> TokenGrid | None:
    """The grid a (batch, tokens, D) output shape reads as, or None.

    The patch tokens must fill one of the model's patch grids after at most ``MAX_EXTRA_TOKENS``
    leading tokens, or else (no patch embedding found, or it does not match) a square grid after
    zero or one class token. Any other token count has no grid and is not eligible.
    """
    if len(shape) != 3 or not isinstance(shape[1], int):
        return None
    tokens = shape[1]
    for height, width in grids:
        if 0 <= tokens - height * width <= MAX_EXTRA_TOKENS:
            return TokenGrid(tokens - height * width, height, width)
    for prefix in (0, 1):
        side = math.isqrt(max(tokens - prefix, 0))
        if side > 1 and side * side == tokens - prefix:
            return TokenGrid(prefix, side, side)
    return None


def layer_tree(model, prefix: str = "", grids: list[tuple[int, int]] | None = None) -> list[LayerNode]:
    """Build the tree of every layer; nested models become subtrees."""
    grids = patch_grids(model) if grids is None else grids
    nodes = []
    for layer in child_layers(model):
        path = prefix + layer.name
        shape = output_shape(layer)
        node = LayerNode(
            path=path,
            name=layer.name,
            type=type(layer).__name__,
            output_shape=shape,
            eligible=is_eligible_shape(shape) or token_grid(shape, grids) is not None,
        )
        if is_submodel(layer):
            node.children = layer_tree(layer, path + SEPARATOR, grids)
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


#: Layers that only reshape or squash a segmentation output: not its default layer.
_OUTPUT_SIDE = ("Activation", "Softmax", "ReLU", "UpSampling2D", "Resizing", "Reshape", "Cropping2D", "ZeroPadding2D")


def default_layer(model, per_pixel_output: bool = False) -> str:
    """The last eligible layer: the usual Grad-CAM choice (deepest spatial features).

    ``per_pixel_output`` (a segmentation model): the last layer before the output's own per-pixel
    classifier (a layer whose channels are the classes) and whatever only upsamples or squashes it.

    Never a 1 × 1 logit convolution: those have no spatial grid and are not eligible (the
    MobileNetV3 trap, where the classifier is a 1 × 1 convolution after pooling). A nested
    model's own node is skipped in favour of its last inner layer, which has the same output.
    """
    nodes = list(iter_layers(layer_tree(model)))
    candidates = [node for node in nodes if node.eligible and not node.children]
    if not candidates:
        raise LayerError(
            "This model has no layer with a spatial map (a 4-D output larger than 1 × 1, or patch "
            "tokens of a Vision Transformer), so Grad-CAM cannot be shown. Is it an image classifier?"
        )
    if per_pixel_output:
        classes = tuple(model.outputs[0].shape)[-1]
        inner = list(candidates)
        while len(inner) > 1 and (inner[-1].output_shape[-1] == classes or inner[-1].type in _OUTPUT_SIDE):
            inner.pop()
        candidates = inner
    last = candidates[-1]
    grid = token_grid(last.output_shape, patch_grids(model)) if len(last.output_shape) == 3 else None
    if grid is not None and grid.prefix:
        return _before_last_attention(model, nodes, candidates) or last.path
    return last.path


def _mixes_tokens(layer) -> bool:
    sublayers = [layer, *getattr(layer, "_flatten_layers", lambda: [])()]
    return any(isinstance(each, keras_of(each).layers.MultiHeadAttention) for each in sublayers)


def _before_last_attention(model, nodes: list[LayerNode], candidates: list[LayerNode]) -> str | None:
    """A class-token ViT reads its class token only: after the last attention every patch token's
    gradient is 0 (the layers there act per token), so its map is empty. The usual choice
    (pytorch-grad-cam's ``blocks[-1].norm1``) is the input of the last attention: the last eligible
    token layer that runs before it."""
    attention = [i for i, node in enumerate(nodes) if not node.children and _mixes_tokens(resolve(model, node.path))]
    if not attention:
        return None
    eligible = {id(node) for node in candidates}
    before = [node for node in nodes[:attention[-1]] if id(node) in eligible and len(node.output_shape) == 3]
    return before[-1].path if before else None


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
    if not is_eligible_shape(shape) and token_grid(shape, patch_grids(model)) is None:
        raise LayerError(
            f"Layer '{path}' has output shape {shape}, which has no spatial grid for a map. "
            f"{_eligible_hint(model)}"
        )
    return layer


def grid_of(model, path: str) -> TokenGrid | None:
    """The token grid of the layer at ``path`` when it outputs tokens; None for a 4-D map."""
    shape = output_shape(resolve(model, path))
    return None if is_eligible_shape(shape) else token_grid(shape, patch_grids(model))


def _eligible_hint(model, limit: int = 12) -> str:
    paths = eligible_paths(model)
    if not paths:
        return "This model has no eligible layer."
    shown = ", ".join(paths[-limit:])
    more = f" (last {limit} of {len(paths)}; `gradcam layers` lists all)" if len(paths) > limit else ""
    return f"Eligible layers: {shown}{more}."
