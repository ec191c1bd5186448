"""Run a Keras model's graph layer by layer, nested models inlined, capturing one layer's output.

Why not ``keras.Model(model.inputs, [inner_layer.output, model.output])`` like the keras.io
recipe? For a layer inside a nested model that raises "Graph disconnected": the inner layer's
output belongs to the inner model's graph, not the outer one. Walking the graphs ourselves
makes every layer reachable — at any depth, in Functional and Sequential models alike — and
lets us swap the classifier's activation for its logits without touching the user's model.

``call`` (optional) runs every leaf layer in place of ``callee(*args, **kwargs)``: pixels.py's
guided backpropagation uses it to give each ReLU its guided gradient while the graph is traced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

from .backend import expects_training, keras_of, walk_functional
from .heads import Head
from .layers import SEPARATOR, child_layers, is_submodel


@dataclass
class _Run:
    target: str | None
    head: Head
    watch: Callable | None = None
    call: Callable | None = None
    captured: list = field(default_factory=list)


def run_graph(model, inputs, head: Head, target: str | None = None, watch: Callable | None = None,
              call: Callable | None = None):
    """Return ``(logits, activation_at_target_or_None)`` for a batch of model inputs.

    A layer called more than once (shared weights) is mapped at its last call: the one nearest
    the classifier, which is what the deepest features mean. ``call(layer, callee, args, kwargs)``,
    if given, computes each leaf layer's output instead of ``callee(*args, **kwargs)`` (``callee``
    is the layer, or the head's linear twin in its place).
    """
    run = _Run(target=target, head=head, watch=watch, call=call)
    logits = head.reduce(_forward(model, inputs, "", run))  # a segmentation output: its score space
    return logits, (run.captured[-1] if run.captured else None)


def _forward(model, inputs, prefix: str, run: _Run):
    if isinstance(model, keras_of(model).Sequential):
        outputs = inputs
        for layer in child_layers(model):
            outputs = _call(layer, (outputs,), {}, prefix, run)
        return outputs
    # Functional: the nodes in order, each operation call wrapped (Keras 3 or Keras 2: backend.py).
    return walk_functional(model, inputs, lambda op, args, kwargs: _call(op, args, kwargs, prefix, run))


def _call(layer, args, kwargs, prefix: str, run: _Run):
    path = prefix + layer.name
    if is_submodel(layer):
        outputs = _forward(layer, args[0], path + SEPARATOR, run)
    elif layer is run.head.skip:
        outputs = args[0]
    else:
        if expects_training(layer):
            # Inference behaviour for BatchNorm/Dropout whatever Keras' global phase is.
            kwargs = {**kwargs, "training": False}
        callee = run.head.linear_twin if layer is run.head.linear else layer
        outputs = callee(*args, **kwargs) if run.call is None else run.call(layer, callee, args, kwargs)
    if path == run.target:
        if run.watch is not None:
            # A tape records only what depends on watched tensors or variables: a layer before
            # the first weights (Rescaling, say) would otherwise get no gradient at all.
            run.watch(outputs)
        run.captured.append(outputs)
    return outputs
