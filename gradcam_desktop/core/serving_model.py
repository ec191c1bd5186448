"""A TensorFlow SavedModel folder without Keras metadata: a Keras 3 ``model.export()`` folder or a
``tf.saved_model.save`` of a tf.Module, called through one of its signatures.

Before TensorFlow loads anything, the folder is checked the way savedmodel.py checks every
SavedModel: its saved_model.pb (size-capped) is parsed with the protobuf parser alone and every
operation of every graph and function must be model math (``savedmodel.check_operations``: the
checkpoint save/restore functions ``tf.saved_model.save`` writes are allowed their file
operations only where no model function can reach them); its variables' checkpoint index declares
the weights' sizes, which must match the data files and fit in memory. The signature to call
(``serving_default``, the sidecar's "signature", or the only one) must take one image batch and
give one (batch, classes) output (or the sidecar names the output key).

Then ``tf.saved_model.load`` restores it and the signature's function is called eagerly for
answers; for gradients it is wrapped once in a ``tf.function`` with a fixed input signature
under a ``tf.GradientTape``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .blackbox import Runtime, TensorInfo
from .errors import GradCamError, ModelLoadError, UnsafeModelError, plain_reason
from .footprint import available_memory, human
from .safety import MEMORY_SHARE, STORED_RATIO, STORED_SLACK
from .savedmodel import MAX_GRAPH_BYTES, _parse_saved_model, _read, _stored_weights, check_operations

DEFAULT_SIGNATURE = "serving_default"
INIT_OP = "__saved_model_init_op"  # a NoOp "signature" every SavedModel lists
MAX_WEIGHT_BYTES = 4 * 1024**3
SERVE_TAG = "serve"


def check_serving(folder: Path, name: str, signature: str | None = None) -> tuple[str, Any, list[str]]:
    """(signature key, its SignatureDef, the tags of its graph) after the operation and weight checks;
    nothing is loaded."""
    graph = _read(folder / "saved_model.pb", MAX_GRAPH_BYTES, name, "saved_model.pb")
    if graph is None:
        raise ModelLoadError(f"{name} is a SavedModel folder in text form (saved_model.pbtxt); Grad-CAM Desktop "
                             "opens the binary saved_model.pb that TensorFlow writes.")
    saved = _parse_saved_model(graph, name)
    for meta_graph in saved.meta_graphs:
        check_operations(meta_graph, name)
    stored = _stored_weights(folder, name)
    declared = stored.declared_bytes
    if declared > STORED_RATIO * stored.stored_bytes + STORED_SLACK:
        raise UnsafeModelError(f"Refused {name}: its checkpoint declares {human(declared)} of weights but stores "
                               f"only {human(stored.stored_bytes)}.")
    budget = int(available_memory() * MEMORY_SHARE)
    if declared > MAX_WEIGHT_BYTES or declared > budget:
        raise ModelLoadError(f"{name} needs about {human(declared)} of memory to load (its weights); this "
                             f"computer has about {human(min(budget, MAX_WEIGHT_BYTES))} to spare for it. "
                             "Refusing to load it.")
    serving = [m for m in saved.meta_graphs if SERVE_TAG in m.meta_info_def.tags] or list(saved.meta_graphs)
    signatures = {key: value for key, value in serving[0].signature_def.items() if key != INIT_OP}
    if signature is not None:
        if signature not in signatures:
            raise ModelLoadError(f"{name} has no signature '{signature}' (model.gradcam.json); it has: "
                                 f"{_listed(signatures)}.")
        key = signature
    elif DEFAULT_SIGNATURE in signatures:
        key = DEFAULT_SIGNATURE
    elif len(signatures) == 1:
        key = next(iter(signatures))
    elif not signatures:
        raise ModelLoadError(f"{name} is a SavedModel without signatures: it declares no function to call with "
                             "an image (export it with model.export() or a serving signature).")
    else:
        raise ModelLoadError(f"{name} has {len(signatures)} signatures ({_listed(signatures)}) and none is "
                             f"'{DEFAULT_SIGNATURE}'; name one as \"signature\" in model.gradcam.json.")
    return key, signatures[key], list(serving[0].meta_info_def.tags)


def _listed(names: Any) -> str:
    shown = [f"'{n}'" for n in sorted(names)[:8]]
    return ", ".join(shown) + (", …" if len(names) > 8 else "")


def _info(key: str, proto: Any) -> TensorInfo:
    import tensorflow as tf

    shape = None if proto.tensor_shape.unknown_rank else \
        tuple(int(d.size) if d.size > 0 else None for d in proto.tensor_shape.dim)
    try:
        dtype = np.dtype(tf.dtypes.as_dtype(proto.dtype).as_numpy_dtype).name
    except TypeError:
        dtype = tf.dtypes.as_dtype(proto.dtype).name
    return TensorInfo(name=key, shape=shape, dtype=dtype)


class ServingRuntime(Runtime):
    format = "savedmodel"

    def __init__(self, loaded: Any, key: str, signature_def: Any):
        super().__init__()
        self.loaded = loaded  # keeps the variables alive
        self.function = loaded.signatures[key]
        self.inputs = [_info(k, v) for k, v in sorted(signature_def.inputs.items())]
        self.outputs = [_info(k, v) for k, v in sorted(signature_def.outputs.items())]

    def run(self, x: np.ndarray, output: str) -> np.ndarray:
        import tensorflow as tf

        result = self.function(**{self.inputs[0].name: tf.constant(x)})
        return np.asarray(result[output])

    def gradients(self, *, output: str, layout: str, units: int, max_batch: int) -> Callable | None:
        image = self.inputs[0]
        if np.dtype(image.dtype).kind != "f" or image.shape is None:
            return None  # integer inputs: no gradient reaches the pixels
        import tensorflow as tf

        batch, *sides = image.shape
        height, width, channels = (sides[1], sides[2], sides[0]) if layout == "NCHW" else tuple(sides)
        function, key, dtype = self.function, image.name, tf.as_dtype(image.dtype)

        @tf.function(input_signature=[tf.TensorSpec([batch, height, width, channels], tf.float32),
                                      tf.TensorSpec([batch, units], tf.float32)])
        def weighted(x: Any, weights: Any) -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                feed = tf.transpose(x, [0, 3, 1, 2]) if layout == "NCHW" else x
                answers = function(**{key: tf.cast(feed, dtype)})[output]
                scores = tf.reduce_sum(tf.reshape(tf.cast(answers, tf.float32), [-1, units]) * weights, axis=-1)
            grads = tape.gradient(scores, x)
            if grads is None:  # known while tracing
                raise GradCamError("This model gives no gradient with respect to its input.")
            return scores, grads

        def gradients(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = np.asarray(x, np.float32)
            weights = np.asarray(weights, np.float32)
            if x.ndim != 4 or weights.shape != (len(x), units):
                raise ValueError(f"gradients takes a (N, H, W, C) batch and (N, {units}) weights, got "
                                 f"{x.shape} and {weights.shape}.")
            scores = np.empty(len(x), np.float32)
            grads = np.empty(x.shape, np.float32)
            for start in range(0, len(x), max_batch):
                chunk, w = x[start:start + max_batch], weights[start:start + max_batch]
                count = len(chunk)
                if batch is not None and count < batch:  # a fixed batch: pad with zero weights
                    chunk = np.concatenate([chunk, np.zeros((batch - count, *chunk.shape[1:]), np.float32)])
                    w = np.concatenate([w, np.zeros((batch - count, units), np.float32)])
                try:
                    s, g = weighted(tf.constant(chunk), tf.constant(w))
                except GradCamError:
                    raise
                except Exception as error:  # noqa: BLE001 - TensorFlow raises many types
                    raise GradCamError(f"This model could not be run on an image: {plain_reason(error)}.") from error
                scores[start:start + count] = s.numpy()[:count]
                grads[start:start + count] = g.numpy()[:count]
            return scores, grads

        return gradients


def open_serving(folder: Path, name: str, *, signature: str | None = None) -> ServingRuntime:
    """Check the folder (check_serving), then load it with TensorFlow and pick the signature."""
    key, signature_def, tags = check_serving(folder, name, signature)
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(folder), tags=tags or None)
    except Exception as error:  # noqa: BLE001 - TensorFlow raises many types for broken folders
        raise ModelLoadError(f"Cannot open model {name}: {plain_reason(error)}") from None
    if key not in loaded.signatures:
        raise ModelLoadError(f"Cannot open model {name}: TensorFlow did not restore its signature '{key}'.")
    return ServingRuntime(loaded, key, signature_def)
