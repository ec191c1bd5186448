"""Turn a float32 NHWC batch of RGB pixels in 0..255 into what a model expects.

Modes:
  raw        as is (the model rescales itself, e.g. a Rescaling layer)
  unit       x / 255                       -> [0, 1]
  symmetric  x / 127.5 - 1                 -> [-1, 1]  (Keras "tf" mode)
  caffe      RGB->BGR, minus ImageNet mean (Keras "caffe" mode; VGG, ResNet50)
  torch      x / 255, minus mean, / std    (Keras "torch" mode; DenseNet)
  zoo:<Name> that Keras Application's own preprocess_input
  affine:S|O x · S + O per channel (S, O: comma-separated): a KerasHub ImageClassifier's own
             image converter (scale, offset), which ``auto`` picks for such a model
"auto" is resolved by core.models (from sidecars or the zoo) before calling ``apply``.
"""

from __future__ import annotations

import importlib

import numpy as np

from .types import ZOO_PREFIX

MODES = ("auto", "raw", "unit", "symmetric", "caffe", "torch")


AFFINE_PREFIX = "affine:"


def affine_mode(scale, offset) -> str:
    """The mode string of x · scale + offset (scalars or one value per channel; None = 1 or 0)."""
    def values(v, default: float) -> str:
        v = default if v is None else v
        return ",".join(repr(float(x)) for x in np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel())
    return f"{AFFINE_PREFIX}{values(scale, 1.0)}|{values(offset, 0.0)}"


def _affine(x: np.ndarray, mode: str) -> np.ndarray:
    try:
        scale, offset = (np.array([float(v) for v in part.split(",")], np.float32)
                         for part in mode[len(AFFINE_PREFIX):].split("|"))
    except ValueError:
        raise ValueError(f"Malformed preprocessing '{mode}': expected affine:SCALE|OFFSET.") from None
    for values in (scale, offset):
        if values.size not in (1, x.shape[-1]):
            raise ValueError(f"Preprocessing '{mode}' has {values.size} values for {x.shape[-1]} channel(s).")
    return x * scale + offset


def _modes_text() -> str:
    return ", ".join(MODES[1:]) + f", or {ZOO_PREFIX}<Name>"


def apply(batch: np.ndarray, mode: str) -> np.ndarray:
    """Return a preprocessed float32 copy of ``batch`` (N, H, W, C); the input is untouched."""
    # Keras' numpy preprocessing divides in place, so always work on our own copy.
    x = np.array(batch, dtype=np.float32, copy=True)
    if x.ndim not in (3, 4):
        raise ValueError(f"Expected an image batch (N, H, W, C), got shape {x.shape}.")
    if mode == "raw":
        return x
    if mode == "unit":
        return x / np.float32(255.0)
    if mode == "symmetric":
        return x / np.float32(127.5) - np.float32(1.0)
    if mode in ("caffe", "torch"):
        _require_rgb(x, mode)
        from keras.applications import imagenet_utils

        out = imagenet_utils.preprocess_input(x, data_format="channels_last", mode=mode)
        return np.ascontiguousarray(out, dtype=np.float32)
    if isinstance(mode, str) and mode.startswith(ZOO_PREFIX):
        from gradcam_desktop.core import zoo
        from gradcam_desktop.core.errors import ModelLoadError

        try:
            entry = zoo.zoo_entry(mode[len(ZOO_PREFIX):])
        except ModelLoadError as e:
            raise ValueError(str(e)) from None
        _require_rgb(x, mode)
        module = importlib.import_module(f"keras.applications.{entry.keras_module}")
        out = module.preprocess_input(x, data_format="channels_last")
        return np.ascontiguousarray(out, dtype=np.float32)
    if isinstance(mode, str) and mode.startswith(AFFINE_PREFIX):
        return _affine(x, mode)
    if mode == "auto":
        raise ValueError("Preprocessing 'auto' must be resolved to a concrete mode "
                         f"({_modes_text()}) before it is applied.")
    raise ValueError(f"Unknown preprocessing mode '{mode}'; use one of {_modes_text()}.")


def _require_rgb(x: np.ndarray, mode: str) -> None:
    # caffe/torch/zoo subtract per-channel ImageNet statistics: they only exist for RGB.
    if x.shape[-1] != 3:
        raise ValueError(f"Preprocessing '{mode}' needs 3-channel RGB input; this model takes "
                         f"{x.shape[-1]} channel(s). Use raw, unit or symmetric instead.")
