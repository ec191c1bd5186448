"""Open a model the way users have them: a .keras/.h5 file or SavedModel folder (Keras 3 or
Keras 2), the built-in demo or a zoo name.

Files are checked before Keras sees them (safety.py: allowlist scan, sizes, weights) and loaded
with ``compile=False`` and safe mode on, unless the user trusted a file that holds Lambda code.
Class names and preprocessing come from sidecar files next to the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

import keras

from . import preprocess as preprocessing
from . import keras2, safety, zoo
from .assets import asset_path
from .errors import GradCamError, ModelLoadError, plain_reason
from .backend import is_operation, keras_of
from .layers import default_layer, is_submodel
from .types import DEMO, ZOO_PREFIX, ModelSpec

log = logging.getLogger(__name__)

DEMO_FILE = "demo_model.keras"


@dataclass
class LoadedModel:
    """A Keras model plus everything needed to feed and describe it; or a black box (``runtime``, a
    blackbox.BlackBoxModel: ONNX, TensorFlow Lite, a serving SavedModel) and no Keras model."""

    model: keras.Model | None
    source: str
    display_name: str
    class_names: list[str]
    preprocess: str
    input_size: tuple[int | None, int | None]
    channels: int
    sha256: str | None = None
    notices: list[str] = field(default_factory=list)
    head: object | None = None  # heads.Head, detected once at load
    #: A model with several outputs: each one (outputs.OutputInfo), and the one ``model`` is seen
    #: through (outputs.through): the one explained. Empty/None for a one-output model.
    outputs: list = field(default_factory=list)
    output: str | None = None
    runtime: Any = None  # blackbox.BlackBoxModel of a file that shows no layers (then model is None)


def demo_model_path() -> Path:
    """The demo model shipped in resources/ (a real file in wheel and editable installs)."""
    return asset_path(DEMO_FILE)


def load_model(
    spec: str | os.PathLike | ModelSpec,
    *,
    trust: bool = False,
    preprocess: str = "auto",
    progress: Callable[[int, int | None], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    output: str | int | None = None,
) -> LoadedModel:
    """Open ``spec``: ``"demo"``, ``"zoo:<Name>"`` or a path to a .keras/.h5 file, a SavedModel folder, an
    .onnx or .tflite file (a black box: ``LoadedModel.runtime``, no Keras model). ``output`` names the
    output to explain in a model with several (its name or index; default: the sidecar's "output",
    else the first one that can be explained)."""
    if preprocess not in preprocessing.MODES and not str(preprocess).startswith(ZOO_PREFIX):
        raise ModelLoadError(
            f"Unknown preprocessing '{preprocess}'. Choose one of: {', '.join(preprocessing.MODES)}."
        )
    parsed = ModelSpec.parse(spec)
    if parsed.kind == "demo":
        loaded = _load_file(demo_model_path(), trust=False, source=DEMO, display_name="Demo shapes")
    elif parsed.kind == "zoo":
        loaded = _load_zoo(parsed.value, progress=progress, cancel=cancel)
    else:
        loaded = _load_file(Path(parsed.value), trust=trust, source=parsed.value, display_name=parsed.label,
                            output=output)
    if output not in (None, "") and not loaded.outputs and loaded.runtime is None:
        raise ModelLoadError(f"{loaded.display_name} has one output: leave out --output.")
    if preprocess != "auto":
        loaded.preprocess = preprocess
    return loaded


def _load_zoo(name: str, *, progress, cancel) -> LoadedModel:
    entry = zoo.entry(name)
    model = zoo.build_zoo_model(entry.name, progress=progress, cancel=cancel)
    return _describe(
        model,
        source=ZOO_PREFIX + entry.name,
        display_name=f"{entry.name} (ImageNet)",
        class_names=zoo.imagenet_class_names(),
        preprocess=entry.preprocess_mode,
    )


def _load_file(path: Path, *, trust: bool, source: str, display_name: str,
               output: str | int | None = None) -> LoadedModel:
    from .blackbox import is_blackbox_path, open_blackbox

    if is_blackbox_path(path):
        box = open_blackbox(path, display_name=display_name, source=source)
        return LoadedModel(model=None, source=source, display_name=display_name, class_names=box.class_names,
                           preprocess=box.preprocess, input_size=box.input_size, channels=box.channels,
                           sha256=box.sha256, notices=list(box.notices), runtime=box)
    checked = safety.check_model_file(path, trust=trust)
    try:
        # compile=False skips optimizer state we never use (and its deserialization surface).
        # Safe mode stays on unless the user trusted a file that holds Lambda code: the scan
        # above refuses everything else safe mode guards (file-reading vocabularies, foreign
        # wrappers), so switching it off unlocks exactly that code.
        if checked.kind == "savedmodel":
            model = keras2.load(checked.path, kind="savedmodel", runs_code=checked.runs_code)
        else:
            with safety.keras_path(checked) as keras_file:
                if checked.keras == 2:  # written by tf.keras / tf_keras: opened by Keras 2 itself
                    model = keras2.load(keras_file, kind=checked.kind, runs_code=checked.runs_code)
                else:
                    model = keras.saving.load_model(keras_file, compile=False, safe_mode=not checked.runs_code)
    except GradCamError:
        raise
    except Exception as error:  # Keras raises many types for broken files
        log.debug("Keras could not load %s", path, exc_info=True)
        raise ModelLoadError(f"Cannot open model {path.name}: {plain_reason(error)}") from error
    path = checked.path  # a SavedModel's folder when its saved_model.pb was named
    sidecar = _read_sidecar(path)
    names = _class_names_from_sidecar(path, sidecar)
    loaded = _describe(
        model,
        source=source,
        display_name=display_name,
        class_names=names,
        preprocess=sidecar.get("preprocess", "auto"),
        output=output if output not in (None, "") else sidecar.get("output"),
        heads=sidecar.get("head"),
        loss=checked.loss,
    )
    loaded.sha256 = _sha256(path)
    return loaded


def _describe(model, *, source, display_name, class_names, preprocess, output=None, heads=None,
              loss=None) -> LoadedModel:
    """Check the model takes one image and has an output that can be explained, and gather how to feed
    it (a model with several outputs: through the one ``output`` names, core/outputs.py). ``heads`` is
    the sidecar's "head": a kind, or kinds by output name; ``loss`` the compiled loss the file records."""
    from .heads import detect_head, loss_name  # local: heads needs a built model
    from .outputs import output_name

    if not (heads is None or isinstance(heads, str)
            or isinstance(heads, dict) and all(isinstance(v, str) for v in heads.values())):
        raise ModelLoadError('The sidecar\'s "head" must be a head kind, or head kinds by output name.')
    if len(model.inputs) != 1:
        raise ModelLoadError(
            f"{display_name} has {len(model.inputs)} inputs; Grad-CAM Desktop explains models "
            "that take one image."
        )
    described: list = []
    chosen = None
    if len(model.outputs) != 1:
        from . import outputs

        if not isinstance(output, (str, int, type(None))) or isinstance(output, bool):
            raise ModelLoadError(f'The sidecar\'s "output" must be an output\'s name or index, not {output!r}.')
        described = outputs.describe(model, heads=heads, loss=loss)
        chosen = outputs.pick(described, output, display_name)
        model = outputs.through(model, chosen.index)
        if isinstance(class_names, dict):
            class_names = class_names.get(chosen.name)
        declared = heads.get(chosen.name) if isinstance(heads, dict) else heads
        trained_with = loss_name(loss, chosen.name, chosen.index)
    else:
        declared = heads.get(output_name(model, 0)) if isinstance(heads, dict) else heads
        trained_with = loss_name(loss, output_name(model, 0), 0)
    in_shape, out_shape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(in_shape) != 4 or in_shape[-1] not in (1, 3):
        raise ModelLoadError(
            f"{display_name} takes input of shape {in_shape}; Grad-CAM Desktop needs images "
            "shaped (batch, height, width, 1 or 3 channels)."
        )
    if len(out_shape) not in (2, 4) or not out_shape[-1]:
        raise ModelLoadError(
            f"{display_name} outputs shape {out_shape}; Grad-CAM Desktop explains outputs of shape "
            "(batch, classes), (batch, values) and (batch, height, width, classes)."
        )
    default_layer(model)  # raises LayerError when no layer has a spatial map
    head = detect_head(model, declared, trained_with)
    count = head.num_classes
    notices = []
    if class_names is None or len(class_names) != count:
        if class_names is not None:
            notices.append(
                f"The labels file lists {len(class_names)} names but the model has {count} "
                "classes; using 'class 0', 'class 1', …"
            )
        class_names = _default_names(head, output_name(model, 0) if chosen is None else chosen.name, count)
    height, width = in_shape[1], in_shape[2]
    converter = image_converter(model)
    if preprocess == "auto" and converter is not None:
        # A KerasHub ImageClassifier's preprocessing lives beside the graph, in its preprocessor.
        preprocess = preprocessing.affine_mode(getattr(converter, "scale", None), getattr(converter, "offset", None))
        size = getattr(converter, "image_size", None)
        if not (height and width) and size and None not in tuple(size):
            height, width = (int(side) for side in size)
    if preprocess == "auto":
        preprocess = "raw" if starts_with_scaling(model) else "unit"
    return LoadedModel(
        model=model,
        source=source,
        display_name=display_name,
        class_names=list(class_names),
        preprocess=preprocess,
        input_size=(height, width),
        channels=int(in_shape[-1]),
        notices=notices,
        head=head,
        outputs=described,
        output=chosen.name if chosen is not None else None,
    )


def _default_names(head, output: str, count: int) -> list[str]:
    """Names when no labels are given: 'class 0', 'class 1', …; a value head's are its output's name
    ('age'; several values: 'scores 0', 'scores 1', …)."""
    if head.kind == "value":
        return [output] if count == 1 else [f"{output} {i}" for i in range(count)]
    return [f"class {i}" for i in range(count)]


def image_converter(model):
    """A KerasHub ImageClassifier's image converter (its own resizing and scaling), or None."""
    preprocessor = getattr(model, "preprocessor", None)
    converter = getattr(preprocessor, "image_converter", None)
    return converter if converter is not None and hasattr(converter, "scale") else None


#: Layers that do nothing at inference: they are skipped when looking for the model's own scaling.
_PASSIVE = ("Resizing", "CenterCrop", "Dropout", "GaussianNoise", "GaussianDropout")


def _operations(model) -> list:
    """The model's layers and keras.ops operations in the order they run (InputLayers dropped)."""
    keras = keras_of(model)
    ops = model.layers if isinstance(model, keras.Sequential) else getattr(model, "operations", model.layers)
    return [op for op in ops if not isinstance(op, keras.layers.InputLayer)]


def starts_with_scaling(model) -> bool:
    """True when the model scales 0–255 pixels itself, so it should be fed ``raw`` pixels.

    That is: the first operation that acts at inference is a Rescaling/Normalization layer, or
    arithmetic written with keras.ops (e.g. ``mobilenet_v2.preprocess_input`` inside the graph).
    Augmentation (Random*), resizing and dropout layers before it are looked through, as are
    nested models (the keras.io and TensorFlow tutorials put augmentation first).
    """
    for op in _operations(model):
        if is_submodel(op):
            inner = _operations(op)
            if inner and all(_is_passive(layer) for layer in inner):
                continue  # e.g. a "data_augmentation" Sequential
            return starts_with_scaling(op)
        if _is_passive(op):
            continue
        layers = keras_of(op).layers
        if isinstance(op, (layers.Rescaling, layers.Normalization)):
            return True
        # A keras.ops call (Keras 2: a TFOpLambda) at the very start is the model's own preprocessing.
        return is_operation(op)
    return False


def _is_passive(op) -> bool:
    if is_submodel(op):
        return all(_is_passive(layer) for layer in _operations(op))
    layers = keras_of(op).layers
    return isinstance(op, tuple(getattr(layers, name) for name in _PASSIVE)) or type(op).__name__.startswith("Random")


def _sidecar_candidates(path: Path, suffix: str) -> list[Path]:
    # Both "model.labels.txt" and "model.keras.labels.txt" are accepted.
    return [path.with_name(path.stem + suffix), path.with_name(path.name + suffix)]


def _read_sidecar(path: Path) -> dict:
    for candidate in _sidecar_candidates(path, ".gradcam.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ModelLoadError(f"Cannot read {candidate.name}: {error}") from error
            if not isinstance(data, dict):
                raise ModelLoadError(f"{candidate.name} must hold a JSON object.")
            mode = data.get("preprocess", "auto")
            if mode not in preprocessing.MODES:
                raise ModelLoadError(
                    f"{candidate.name}: unknown preprocess '{mode}'. "
                    f"Choose one of: {', '.join(preprocessing.MODES)}."
                )
            return data
    return {}


def _class_names_from_sidecar(path: Path, sidecar: dict) -> list[str] | dict[str, list[str]] | None:
    """The class names the sidecars give: a list, or for a model with several outputs a dict of lists by
    output name (``"labels": {"gender": ["female", "male"]}`` in model.gradcam.json)."""
    if isinstance(sidecar.get("labels"), list):
        return [str(name) for name in sidecar["labels"]]
    if isinstance(sidecar.get("labels"), dict):
        return {str(key): [str(name) for name in value] for key, value in sidecar["labels"].items()
                if isinstance(value, list)}
    for candidate in _sidecar_candidates(path, ".labels.txt"):
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8-sig").splitlines()
            return [line.strip() for line in lines if line.strip()]
    for candidate in _sidecar_candidates(path, ".labels.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except ValueError as error:
                raise ModelLoadError(f"Cannot read {candidate.name}: {error}") from error
            if isinstance(data, dict):  # {"0": "cat", "1": "dog"}
                return [str(data[key]) for key in sorted(data, key=lambda k: int(k))]
            return [str(name) for name in data]
    return None


def _sha256(path: Path) -> str:
    """The file's SHA-256; for a SavedModel folder, of its files' relative names and bytes in order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
