"""Classifiers the app can only ask for answers: ONNX files, TensorFlow Lite files and SavedModel
folders without Keras metadata (Keras 3 ``model.export()``, ``tf.saved_model.save`` of a tf.Module).

They carry no Keras layers, so Grad-CAM cannot look inside them; the app explains them with
methods that need only the model's answers (occlusion, RISE) and, where the model is a
differentiable TensorFlow function (a SavedModel), with input gradients. This module opens them
after their format's checks (onnx_model.py, tflite_model.py, serving_model.py: every file is
parsed and checked before a runtime is given it) and describes them in a ``BlackBoxModel``.

What the file cannot tell comes from the sidecar ``<model>.gradcam.json`` next to it (for a folder
``<folder>.gradcam.json`` beside the folder), the same file Keras models use (models._read_sidecar):

  preprocess  how the app scales 0..255 pixels before ``predict`` (a preprocess MODE: raw, unit,
              symmetric, caffe, torch; or zoo:<Name>). "auto" or absent: nothing in a black box
              says how it was trained, so 0..255 pixels ("raw", with a notice for float inputs),
              except for a quantized integer input, whose quantization range tells: [0, 255] ->
              raw, [0, 1] -> unit, [-1, 1] -> symmetric.
  layout      "NHWC" or "NCHW": the order of the image input's axes, when its shape cannot tell
              (e.g. every side dynamic). Otherwise the side of size 1 or 3 says; an ambiguous ONNX
              model is taken as NCHW (PyTorch's), TensorFlow formats as NHWC.
  input_size  [height, width] for a model whose sides are dynamic (the app resizes pictures to
              it); it may not contradict sides the model fixes.
  outputs     "probabilities" (rows of non-negative numbers summing to 1, e.g. after softmax) or
              "scores" (logits, sigmoid outputs, ...). Absent: "probabilities" when the graph ends
              in a softmax or a test prediction's rows look like probabilities, else "scores".
  output      which output to explain when the model has several (its name; a SavedModel
              signature's output key).
  signature   a SavedModel's signature to call (default: "serving_default", else the only one).
  labels      class names, a list (or a ``<model>.labels.txt``/``.labels.json`` file, as for Keras
              models). Without any: "class 0", "class 1", ...

The model must take one image batch (rank 4) and give one (batch, classes) output (rank 2).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import preprocess as preprocessing
from .errors import GradCamError, ModelLoadError, plain_reason
from .types import ZOO_PREFIX

FORMATS = ("onnx", "tflite", "savedmodel")
LAYOUTS = ("NHWC", "NCHW")
OUTPUT_KINDS = ("probabilities", "scores")
SIDECAR_KEYS = ("preprocess", "layout", "input_size", "outputs", "output", "signature", "labels")
ONNX_SUFFIXES = (".onnx",)
TFLITE_SUFFIXES = (".tflite",)
#: Threads a runtime may use for one model (ONNX Runtime intra-op, TFLite): the app's engine
#: shares the machine with its window, so at most 4, never more than the machine has.
RUNTIME_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Images per runtime call for a model with a dynamic batch: 16 at 224x224, fewer for larger inputs.
DEFAULT_MAX_BATCH = 16
_BATCH_PIXELS = DEFAULT_MAX_BATCH * 224 * 224
#: The side of the test images run at load when the model's sides are dynamic.
PROBE_SIDE = 224
MAX_SIDE = 8192
#: Rows are probabilities when within this of [0, 1] and of summing to 1 (float32 softmax: ~1e-6).
PROBABILITY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class TensorInfo:
    """One input or output as the file declares it (None: a dynamic side; shape None: unknown rank).

    ``scale``/``zero_point``: TFLite quantization, real = scale · (q − zero_point); 0 = none.
    """

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale > 0 and np.dtype(self.dtype).kind in "iu"


class Runtime:
    """What a format module hands back: declared inputs/outputs and a way to run them.

    ``run(x, output)`` gets ``x`` in the model's own layout and dtype, with a batch the input's
    shape allows, and returns that output as an array (any dtype; converted here).
    """

    format: str = ""
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    notices: list[str]
    extra_files: list[Path]  # data files beside the model (ONNX external data), for the digest

    def __init__(self) -> None:
        self.inputs, self.outputs, self.notices, self.extra_files = [], [], [], []

    def run(self, x: np.ndarray, output: str) -> np.ndarray:
        raise NotImplementedError

    def declares_probabilities(self, output: str) -> bool:
        """True when the graph visibly ends that output in a softmax."""
        return False

    def gradients(self, *, output: str, layout: str, units: int, max_batch: int) -> Callable | None:
        """A (batch, weights) -> (scores, grads) function, for differentiable runtimes."""
        return None


@dataclass(frozen=True, eq=False)
class BlackBoxModel:
    """A classifier seen from outside: how to feed it and its answers.

    ``predict(batch)`` takes NHWC float32 input in *model space* (pictures resized to
    ``input_size`` by images.to_model_input and scaled by ``preprocess.apply(batch, preprocess)``)
    and returns (N, units) float32. It transposes to NCHW for such models, converts to
    ``input_dtype`` (float types: cast; integer types: rounded and clipped, through the input's
    quantization scale/zero-point when it has one, e.g. a quantized TFLite model's uint8 input;
    quantized outputs are dequantized) and runs ``max_batch`` images per runtime call, padding the
    last call for a model whose batch is fixed; any N works.

    ``gradients`` is None, or (SavedModel with a float input) ``gradients(batch, weights)`` with
    batch (N, H, W, C) in model space and weights (N, units): returns (scores (N,), grads
    (N, H, W, C)) float32 where score = Σ weights · outputs (outputs may be probabilities, see
    ``outputs``) and grads its derivative with respect to the model-space input.
    """

    source: str
    display_name: str
    format: str                                # "onnx" | "tflite" | "savedmodel"
    input_size: tuple[int | None, int | None]  # (height, width); None: any (the picture's own)
    channels: int                              # 1 or 3
    layout: str                                # "NHWC" | "NCHW": the model's own input layout
    input_dtype: str                           # NumPy name of the input's dtype
    preprocess: str                            # a preprocess MODE the app applies before predict
    class_names: list[str]
    outputs: str                               # "probabilities" | "scores"
    units: int                                 # classes: the output's last side
    sha256: str | None = None
    notices: list[str] = field(default_factory=list)
    max_batch: int = 1                         # images per runtime call (the efficient batch)
    gradients: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None
    input_name: str = ""
    output_name: str = ""
    fixed_batch: int | None = None             # the only batch the model takes, if it fixes one
    runtime: Runtime | None = field(default=None, repr=False)
    input_info: TensorInfo | None = field(default=None, repr=False)
    output_info: TensorInfo | None = field(default=None, repr=False)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, units) float32 answers for a model-space NHWC float32 batch of any N."""
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        self._check_batch(x)
        out = np.empty((len(x), self.units), np.float32)
        for start in range(0, len(x), self.max_batch):
            chunk = x[start:start + self.max_batch]
            out[start:start + len(chunk)] = self._run(chunk)
        return out

    def _check_batch(self, x: np.ndarray) -> None:
        if x.ndim != 4 or x.shape[-1] != self.channels:
            raise ValueError(f"{self.display_name} takes a (N, height, width, {self.channels}) batch, "
                             f"got shape {x.shape}.")
        for side, want in zip(x.shape[1:3], self.input_size):
            if want is not None and side != want:
                raise ValueError(f"{self.display_name} takes {self.input_size[0]}x{self.input_size[1]} "
                                 f"pictures, got {x.shape[1]}x{x.shape[2]}.")

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        assert self.runtime is not None and self.input_info is not None and self.output_info is not None
        count = len(chunk)
        if self.fixed_batch is not None and count < self.fixed_batch:
            pad = np.zeros((self.fixed_batch - count, *chunk.shape[1:]), np.float32)
            chunk = np.concatenate([chunk, pad])
        if self.layout == "NCHW":
            chunk = chunk.transpose(0, 3, 1, 2)
        feed = to_input_dtype(np.ascontiguousarray(chunk), self.input_info)
        try:
            raw = self.runtime.run(feed, self.output_name)
        except GradCamError:
            raise
        except Exception as error:  # noqa: BLE001 - each runtime raises its own types
            raise GradCamError(f"This model could not be run on an image: {plain_reason(error)}.") from error
        answers = from_output_dtype(np.asarray(raw), self.output_info)
        if answers.ndim != 2 or answers.shape != (len(chunk), self.units):
            raise GradCamError(f"This model could not be run on an image: it answered with shape "
                               f"{answers.shape} instead of ({len(chunk)}, {self.units}).")
        return answers[:count]


def to_input_dtype(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Model-space float32 values in the input's dtype (integers: rounded, clipped; quantized)."""
    dtype = np.dtype(info.dtype)
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    if dtype.kind in "iu":
        values = x / np.float32(info.scale) + np.float32(info.zero_point) if info.quantized else x
        limits = np.iinfo(dtype)
        return np.clip(np.rint(values), limits.min, limits.max).astype(dtype)
    raise GradCamError(f"The model's input has type {dtype.name}, which Grad-CAM Desktop cannot feed pictures to.")


def from_output_dtype(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    """An output as float32 (a quantized one dequantized)."""
    if info.quantized:
        return (y.astype(np.float32) - np.float32(info.zero_point)) * np.float32(info.scale)
    return y.astype(np.float32, copy=False)


# ---------------------------------------------------------------- paths

def read_model_file(path: Path, name: str) -> bytes:
    """A black-box file's bytes, refused in one line when empty, over safety.MAX_FILE_BYTES or unreadable
    (the format's checks then parse these bytes, and the runtime is given them: no second read)."""
    from .safety import MAX_FILE_BYTES

    try:
        size = path.stat().st_size
        if size == 0:
            raise ModelLoadError(f"{name} is empty.")
        if size > MAX_FILE_BYTES:
            raise ModelLoadError(f"{name} is larger than {MAX_FILE_BYTES // 1024**3} GiB; refusing to open it.")
        return path.read_bytes()
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None


def _savedmodel_folder(path: Path) -> Path | None:
    folder = path.parent if path.name == "saved_model.pb" else path
    return folder if folder.is_dir() and (folder / "saved_model.pb").is_file() else None


def is_blackbox_path(path: str | os.PathLike) -> bool:
    """True for a .onnx or .tflite file name, or a SavedModel folder (or its saved_model.pb)
    without keras_metadata.pb; Keras files and Keras SavedModels are models.load_model's."""
    p = Path(path)
    folder = _savedmodel_folder(p)
    if folder is not None:
        return not (folder / "keras_metadata.pb").exists()
    return p.suffix.lower() in ONNX_SUFFIXES + TFLITE_SUFFIXES and not p.is_dir()


# ---------------------------------------------------------------- opening

def open_blackbox(path: str | os.PathLike, *, preprocess: str = "auto", display_name: str | None = None,
                  source: str | None = None) -> BlackBoxModel:
    """Check, open and describe a black-box classifier; ModelLoadError (UnsafeModelError for a
    refusal) with one line otherwise. ``preprocess`` other than "auto" overrides the sidecar's."""
    from .models import _class_names_from_sidecar, _read_sidecar, _sha256

    if preprocess not in preprocessing.MODES and not str(preprocess).startswith(ZOO_PREFIX):
        raise ModelLoadError(f"Unknown preprocessing '{preprocess}'. Choose one of: {', '.join(preprocessing.MODES)}.")
    p = Path(path)
    folder = _savedmodel_folder(p)
    if folder is not None:
        p, kind = folder, "savedmodel"
        if (folder / "keras_metadata.pb").exists():
            raise ModelLoadError(f"{folder.name} is a Keras SavedModel; open it as a Keras model.")
    elif p.is_dir():
        raise ModelLoadError(f"{p.name or p} is a folder without saved_model.pb, not a SavedModel.")
    elif p.suffix.lower() in ONNX_SUFFIXES:
        kind = "onnx"
    elif p.suffix.lower() in TFLITE_SUFFIXES:
        kind = "tflite"
    else:
        raise ModelLoadError(f"{p.name} is not an ONNX (.onnx) or TensorFlow Lite (.tflite) file, nor a "
                             "SavedModel folder.")
    name = p.name or str(p)
    if not p.exists():
        raise ModelLoadError(f"{p} does not exist.")
    sidecar = _read_sidecar(p)
    _check_sidecar(sidecar, name)
    runtime: Runtime
    if kind == "onnx":
        from .onnx_model import open_onnx

        runtime = open_onnx(p, name)
    elif kind == "tflite":
        from .tflite_model import open_tflite

        runtime = open_tflite(p, name)
    else:
        from .serving_model import open_serving

        runtime = open_serving(p, name, signature=sidecar.get("signature"))
    names = _class_names_from_sidecar(p, sidecar)
    if isinstance(names, dict):  # labels by output name: the output the sidecar names
        names = names.get(str(sidecar.get("output")))
    model = _describe(runtime, sidecar, name=name, kind=kind, preprocess=preprocess,
                      source=source if source is not None else str(path),
                      display_name=display_name or name, class_names=names)
    digest = _sha256(p)
    if runtime.extra_files:  # ONNX external data: the files the weights are in count too
        combined = hashlib.sha256(digest.encode("ascii"))
        for extra in runtime.extra_files:
            combined.update(b"\0" + extra.name.encode("utf-8") + b"\0" + _sha256(extra).encode("ascii"))
        digest = combined.hexdigest()
    return _replace(model, sha256=digest)


def _replace(model: BlackBoxModel, **changes: Any) -> BlackBoxModel:
    import dataclasses

    return dataclasses.replace(model, **changes)


def _check_sidecar(sidecar: dict, name: str) -> None:
    where = f"{name}'s model.gradcam.json"
    layout = sidecar.get("layout")
    if layout is not None and str(layout).upper() not in LAYOUTS:
        raise ModelLoadError(f"{where}: layout must be NHWC or NCHW, not {layout!r}.")
    kind = sidecar.get("outputs")
    if kind is not None and kind not in OUTPUT_KINDS:
        raise ModelLoadError(f"{where}: outputs must be 'probabilities' or 'scores', not {kind!r}.")
    size = sidecar.get("input_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2
                                 and all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_SIDE
                                         for s in size)):
        raise ModelLoadError(f"{where}: input_size must be [height, width] in pixels (1 to {MAX_SIDE}).")
    for key in ("output", "signature"):
        if key in sidecar and not isinstance(sidecar[key], str):
            raise ModelLoadError(f"{where}: {key} must be a name (text).")


def _describe(runtime: Runtime, sidecar: dict, *, name: str, kind: str, preprocess: str, source: str,
              display_name: str, class_names: list[str] | None) -> BlackBoxModel:
    notices = list(runtime.notices)
    if len(runtime.inputs) != 1:
        listed = ", ".join(f"'{i.name}'" for i in runtime.inputs[:6])
        raise ModelLoadError(f"{name} has {len(runtime.inputs)} inputs ({listed}); Grad-CAM Desktop explains "
                             "models that take one image.")
    image = runtime.inputs[0]
    if image.shape is None or len(image.shape) != 4:
        rank = "an unknown shape" if image.shape is None else f"shape {_shape_text(image.shape)}"
        raise ModelLoadError(f"{name}'s input '{image.name}' has {rank}; Grad-CAM Desktop needs an image batch "
                             "(batch, height, width, channels) or (batch, channels, height, width).")
    output = _pick_output(runtime.outputs, sidecar.get("output"), name)
    layout, channels, (height, width) = _layout(image, sidecar.get("layout"), kind, name, notices)
    height, width = _fill_size((height, width), sidecar.get("input_size"), name)
    fixed_batch = image.shape[0]
    if fixed_batch is not None and fixed_batch < 1:
        raise ModelLoadError(f"{name}'s input '{image.name}' declares a batch of {fixed_batch} images.")
    np_dtype = np.dtype(image.dtype)
    if np_dtype.kind not in "fiu":
        raise ModelLoadError(f"{name}'s input '{image.name}' has type {image.dtype}; Grad-CAM Desktop feeds "
                             "pictures as numbers (float or integer).")
    mode = preprocess if preprocess != "auto" else sidecar.get("preprocess", "auto")
    if mode == "auto":
        mode = _auto_preprocess(image, name, notices)
    pixels = (height or PROBE_SIDE) * (width or PROBE_SIDE)
    max_batch = fixed_batch or max(1, min(DEFAULT_MAX_BATCH, _BATCH_PIXELS // max(1, pixels)))
    declared_units = output.shape[-1] if output.shape is not None and output.shape else None
    model = BlackBoxModel(
        source=source, display_name=display_name, format=kind, input_size=(height, width), channels=channels,
        layout=layout, input_dtype=np_dtype.name, preprocess=mode, class_names=[], outputs="scores",
        units=declared_units or 0, notices=notices, max_batch=max_batch, input_name=image.name,
        output_name=output.name, fixed_batch=fixed_batch, runtime=runtime, input_info=image, output_info=output)
    answers = _probe(model, name, declared_units)
    units = int(answers.shape[1])
    if units < 1:
        raise ModelLoadError(f"{name}'s output '{output.name}' has no classes (shape {answers.shape}).")
    kind_of_outputs = sidecar.get("outputs") or (
        "probabilities" if runtime.declares_probabilities(output.name) or _look_like_probabilities(answers, output)
        else "scores")
    if class_names is None or len(class_names) != units:
        if class_names is not None:
            notices.append(f"The labels file lists {len(class_names)} names but the model has {units} "
                           "classes; using 'class 0', 'class 1', …")
        class_names = [f"class {i}" for i in range(units)]
    gradients = runtime.gradients(output=output.name, layout=layout, units=units, max_batch=max_batch)
    return _replace(model, units=units, outputs=kind_of_outputs, class_names=list(class_names), gradients=gradients)


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if side is None else str(side) for side in shape) + ")"


def _pick_output(outputs: list[TensorInfo], wanted: str | None, name: str) -> TensorInfo:
    if wanted is not None:
        chosen = [o for o in outputs if o.name == wanted]
        if not chosen:
            listed = ", ".join(f"'{o.name}'" for o in outputs[:8])
            raise ModelLoadError(f"{name} has no output named '{wanted}' (model.gradcam.json); its outputs: {listed}.")
        output = chosen[0]
    elif len(outputs) != 1:
        listed = ", ".join(f"'{o.name}'" for o in outputs[:8])
        raise ModelLoadError(f"{name} has {len(outputs)} outputs ({listed}); name the one with the class "
                             "scores as \"output\" in model.gradcam.json.")
    else:
        output = outputs[0]
    if output.shape is not None and len(output.shape) != 2:
        raise ModelLoadError(f"{name}'s output '{output.name}' has shape {_shape_text(output.shape)}; Grad-CAM "
                             "Desktop explains classifiers whose output is (batch, classes).")
    if np.dtype(output.dtype).kind not in "fiu":
        raise ModelLoadError(f"{name}'s output '{output.name}' has type {output.dtype}, not class scores.")
    return output


def _layout(image: TensorInfo, declared: Any, kind: str, name: str,
            notices: list[str]) -> tuple[str, int, tuple[int | None, int | None]]:
    """(layout, channels, (height, width)) of a rank-4 image input."""
    assert image.shape is not None
    _, second, third, last = image.shape
    if declared is not None:
        layout = str(declared).upper()
    elif last in (1, 3) and second not in (1, 3):
        layout = "NHWC"
    elif second in (1, 3) and last not in (1, 3):
        layout = "NCHW"
    else:
        layout = "NCHW" if kind == "onnx" else "NHWC"
        if second is None and last is None:
            notices.append(f"{name}'s input shape {_shape_text(image.shape)} does not say where its channels are; "
                           f"taking it as {layout} (set \"layout\" in model.gradcam.json if that is wrong).")
    channel_side = second if layout == "NCHW" else last
    height, width = (third, last) if layout == "NCHW" else (second, third)
    if channel_side is None:
        channel_side = 3
        notices.append(f"{name} does not fix its number of channels; feeding it RGB pictures (3 channels).")
    if channel_side not in (1, 3):
        raise ModelLoadError(f"{name}'s input '{image.name}' takes {channel_side} channels ({layout} "
                             f"{_shape_text(image.shape)}); Grad-CAM Desktop feeds 1 (gray) or 3 (RGB) channels.")
    for side in (height, width):
        if side is not None and not 0 < side <= MAX_SIDE:
            raise ModelLoadError(f"{name}'s input '{image.name}' takes pictures of {height}x{width} pixels "
                                 f"({layout} {_shape_text(image.shape)}); Grad-CAM Desktop feeds 1 to {MAX_SIDE}.")
    return layout, int(channel_side), (height, width)


def _fill_size(size: tuple[int | None, int | None], declared: Any, name: str) -> tuple[int | None, int | None]:
    if declared is None:
        return size
    filled = []
    for have, want in zip(size, declared):
        if have is not None and have != want:
            raise ModelLoadError(f"{name}'s model.gradcam.json says input_size {declared[0]}x{declared[1]} but the "
                                 f"model takes {size[0] or 'any'}x{size[1] or 'any'} pictures.")
        filled.append(int(want))
    return filled[0], filled[1]


#: A quantized integer input's real range -> the preprocess mode that produces it.
_RANGES = {"raw": (0.0, 255.0), "unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}


def _auto_preprocess(image: TensorInfo, name: str, notices: list[str]) -> str:
    """"auto" for a black box: a quantized input's range tells; otherwise 0..255 ("raw")."""
    dtype = np.dtype(image.dtype)
    if image.quantized:
        limits = np.iinfo(dtype)
        low = image.scale * (float(limits.min) - image.zero_point)
        high = image.scale * (float(limits.max) - image.zero_point)
        for mode, (want_low, want_high) in _RANGES.items():
            slack = 0.05 * (want_high - want_low)
            if abs(low - want_low) <= slack and abs(high - want_high) <= slack:
                return mode
        notices.append(f"{name}'s quantized input covers {low:.3g}..{high:.3g}, no usual pixel range; feeding "
                       "0–255 pixels (set \"preprocess\" in model.gradcam.json if it expects something else).")
        return "raw"
    if dtype.kind == "f":
        notices.append(f"Nothing in {name} says how it scales pixels: it gets 0–255 values (\"raw\"). If it was "
                       "trained on 0–1 or −1–1 inputs, choose that preprocessing or set \"preprocess\" in "
                       "model.gradcam.json.")
    return "raw"  # integer pixels: 0..255 as they are


def _probe(model: BlackBoxModel, name: str, declared_units: int | None) -> np.ndarray:
    """Answers for two fixed noise pictures: the model runs, and what its rows look like."""
    height, width = (side or PROBE_SIDE for side in model.input_size)
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (2, height, width, model.channels)).astype(np.float32)
    try:
        batch = preprocessing.apply(pixels, model.preprocess)
    except ValueError as error:
        raise ModelLoadError(f"Cannot open model {name}: {error}") from None
    try:
        return model.predict(batch) if declared_units else _predict_any_width(model, batch)
    except GradCamError as error:
        raise ModelLoadError(f"Cannot open model {name}: it could not be run on a test picture "
                             f"({str(error).removeprefix('This model could not be run on an image: ').rstrip('.')}).") \
            from error


def _predict_any_width(model: BlackBoxModel, batch: np.ndarray) -> np.ndarray:
    """One runtime call for a model whose output width (classes) is not declared."""
    assert model.runtime is not None and model.input_info is not None and model.output_info is not None
    x = batch[: model.fixed_batch or len(batch)]
    if model.fixed_batch is not None and len(x) < model.fixed_batch:
        x = np.concatenate([x, np.zeros((model.fixed_batch - len(x), *x.shape[1:]), np.float32)])
    if model.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    try:
        raw = model.runtime.run(to_input_dtype(np.ascontiguousarray(x), model.input_info), model.output_name)
    except GradCamError:
        raise
    except Exception as error:  # noqa: BLE001 - each runtime raises its own types
        raise GradCamError(f"This model could not be run on an image: {plain_reason(error)}.") from error
    answers = from_output_dtype(np.asarray(raw), model.output_info)
    if answers.ndim != 2 or len(answers) != len(x):
        raise GradCamError(f"This model could not be run on an image: it answered with shape {answers.shape}, "
                           "not (batch, classes).")
    return answers


def _look_like_probabilities(answers: np.ndarray, output: TensorInfo) -> bool:
    if answers.shape[1] < 2 or not np.isfinite(answers).all():
        return False
    tolerance = PROBABILITY_TOLERANCE + (answers.shape[1] * output.scale if output.quantized else 0.0)
    in_range = answers.min() >= -tolerance and answers.max() <= 1 + tolerance
    return bool(in_range and np.all(np.abs(answers.sum(axis=1) - 1) <= tolerance))
