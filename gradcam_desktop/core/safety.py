"""Refuse model files that would run code, before Keras ever parses them.

A .keras/.h5 model file is a program: its config names Python classes and functions that
Keras instantiates. Keras' ``safe_mode`` only blocks serialized lambdas, so we read the
config ourselves (zip + JSON, or HDF5 attributes via h5py; no Keras import) and refuse
Lambda layers, custom code, wrappers of foreign frameworks and a few Keras APIs that are not
model building blocks. Loaders must then call ``load_model(..., compile=False)``: the
compile/training config is scanned leniently (custom losses there are never deserialized).
"""

from __future__ import annotations

import builtins
import json
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError

MAX_FILE_BYTES = 2 * 1024**3          # larger files are not image classifiers we can show
MAX_ZIP_MEMBERS = 10_000              # a Keras 3 zip holds 3 files plus assets
MAX_ZIP_UNPACKED_BYTES = 4 * 1024**3  # zip-bomb guard on the declared sizes
MAX_CONFIG_BYTES = 64 * 1024**2       # JSON configs of huge models are a few MB

KERAS_EXTENSIONS = (".keras",)
H5_EXTENSIONS = (".h5", ".hdf5")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_UNSAFE_SWITCH = "enable_unsafe_deserialization"
_TRUST_HINT = ("Use --trust-model (or 'Trust this file' in the window) "
               "only if you trust who made it.")

# Layers that pull in code or files from outside the Keras model format.
_FOREIGN_LAYERS = {
    "TFSMLayer": "wraps a separate TensorFlow SavedModel whose layers Grad-CAM cannot see "
                 "(and which may run arbitrary TensorFlow ops)",
    "TorchModuleWrapper": "wraps a pickled PyTorch module, which runs code when loaded",
    "JaxLayer": "wraps JAX Python functions that are not stored in the file",
    "FlaxLayer": "wraps a Flax module, i.e. Python code that is not stored in the file",
}
# Special objects that serialization_lib / json_utils know; any other "__x__" is suspicious.
_SPECIAL_OBJECTS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__",
                    "__ellipsis__", "__slice__", "__tuple__", "__typespec__"}
# Python packages whose classes Keras may import from a config (the file only names them).
_KERAS_PACKAGES = ("keras", "tf_keras")
# Keras namespaces that touch files, downloads or process-wide settings, not model math.
_NON_MODELING_FUNCTIONS = (
    "keras.config", "keras.saving", "keras.models", "keras.utils", "keras.backend",
    "keras.preprocessing", "keras.callbacks", "keras.export", "keras.datasets",
    "keras.visualization", "keras.distribution", "keras.mixed_precision", "keras.legacy",
)
_NON_MODELING_CLASSES = ("keras.config", "keras.saving", "keras.callbacks", "keras.export",
                         "keras.src.saving", "keras.src.export", "keras.src.callbacks")
# Keras looks up functions saved with module "builtins" only in these keras modules.
_BUILTIN_FUNCTION_MODULES = ("activations", "constraints", "initializers", "losses",
                             "metrics", "optimizers", "regularizers")
_COMPILE_KEYS = ("compile_config", "training_config")


def check_model_file(path: str | os.PathLike, *, trust: bool = False) -> None:
    """Raise ModelLoadError/UnsafeModelError unless ``path`` is a plain Keras model file."""
    p = Path(path)
    name = p.name or str(p)
    if p.is_dir():
        if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
            raise ModelLoadError(_savedmodel_message(name))
        raise ModelLoadError(f"{name} is a folder, not a model file; choose a .keras or .h5 file.")
    if p.name in ("saved_model.pb", "saved_model.pbtxt"):
        raise ModelLoadError(_savedmodel_message(p.parent.name or name))
    if not p.exists():
        raise ModelLoadError(f"{p} does not exist.")
    suffix = p.suffix.lower()
    if suffix not in KERAS_EXTENSIONS + H5_EXTENSIONS:
        raise ModelLoadError(f"{name} is not a Keras model file; Grad-CAM Desktop opens "
                             ".keras (Keras 3) and .h5/.hdf5 (legacy Keras) models.")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None
    if size == 0:
        raise ModelLoadError(f"{name} is empty.")
    if size > MAX_FILE_BYTES:
        raise ModelLoadError(f"{name} is larger than {MAX_FILE_BYTES // 1024**3} GiB; "
                             "refusing to open it.")
    if suffix in KERAS_EXTENSIONS:
        raw, extra = _read_keras_config(p, name), None
    else:
        raw, extra = _read_h5_config(p, name)
    scan_config(_parse_json(raw, name, "config.json" if extra is None else "model_config"),
                trust=trust, source=name)
    if extra:  # legacy h5 training config: only deserialized with compile=True
        scan_config({"training_config": _parse_json(extra, name, "training_config")},
                    trust=trust, source=name)


def scan_config(config: Any, *, trust: bool = False, source: str = "this model") -> None:
    """Walk a model config (Keras 3 or legacy h5 format) and raise UnsafeModelError on code.

    ``trust=True`` only allows code stored in the file (Lambda layers, lambdas); custom
    classes and foreign wrappers stay refused because their code is not in the file.
    """
    # Iterative depth-first walk: hostile configs may nest deeper than Python's stack.
    stack: list[tuple[Any, str | None, bool]] = [(config, None, False)]
    while stack:
        node, layer, in_compile = stack.pop()
        if isinstance(node, str):
            _check_string(node, source)
            continue
        if isinstance(node, list):
            stack.extend((item, layer, in_compile) for item in reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        for key in node:
            _check_string(str(key), source)
        if isinstance(node.get("class_name"), str):
            layer = _object_name(node) or layer
            _check_object(node, layer, in_compile, trust, source)
        _check_legacy_function(node, layer, in_compile, trust, source)
        stack.extend((node[key], layer, in_compile or key in _COMPILE_KEYS)
                     for key in reversed(list(node)))


# ---------------------------------------------------------------- config rules

def _check_string(text: str, source: str) -> None:
    if _UNSAFE_SWITCH in text:
        raise UnsafeModelError(f"Refused {source}: the file tries to switch off Keras safe "
                               f"mode ('{_UNSAFE_SWITCH}'), which only a malicious file does.")


def _code_error(source: str, where: str) -> UnsafeModelError:
    return UnsafeModelError(f"Refused {source}: {where} holds a Python lambda function, which "
                            f"runs code stored in the file. {_TRUST_HINT}")


def _custom_error(source: str, where: str, what: str) -> UnsafeModelError:
    return UnsafeModelError(f"Refused {source}: {where} needs custom Python code ({what}) that "
                            "is not part of Keras or the file; Grad-CAM Desktop only opens "
                            "models built from standard Keras layers.")


def _object_name(node: dict) -> str | None:
    cfg = node.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    name = name if isinstance(name, str) else node.get("name")
    return name if isinstance(name, str) else None


def _check_object(node: dict, layer: str | None, in_compile: bool, trust: bool,
                  source: str) -> None:
    """One {"class_name": ...} object: a layer, model, initializer, function, ..."""
    cls = node["class_name"]
    where = f"layer '{layer}'" if layer else "the model"
    if cls == "Lambda" and not trust:
        raise UnsafeModelError(f"Refused {source}: {where} is a Lambda layer, which runs "
                               f"Python code stored in the file. {_TRUST_HINT}")
    if cls == "__lambda__":
        if not trust:
            raise _code_error(source, where)
        return
    fn = node.get("config") if cls == "function" else None
    target = fn if isinstance(fn, str) else cls  # what Keras will look up
    short = target.rsplit(">", 1)[-1]
    if short in _FOREIGN_LAYERS:
        raise UnsafeModelError(f"Refused {source}: {where} is a {short}, which "
                               f"{_FOREIGN_LAYERS[short]}.")
    if cls.startswith("__") and cls not in _SPECIAL_OBJECTS:
        raise UnsafeModelError(f"Refused {source}: {where} holds an unknown special object "
                               f"'{cls}'.")
    custom = None  # description of code that lives outside the file and outside Keras
    if ">" in cls:  # legacy h5 writes registered classes as "package>Name"
        custom = f"registered class '{cls}'"
    registered = node.get("registered_name")
    if isinstance(registered, str) and ">" in registered \
            and registered.split(">", 1)[0] not in _KERAS_PACKAGES:
        custom = f"registered {'function' if cls == 'function' else 'class'} '{registered}'"
    if "module" in node:
        module = node["module"]
        if module == "builtins" and cls == "function":
            if isinstance(fn, str) and hasattr(builtins, fn):  # eval, exec, open, ...
                raise UnsafeModelError(f"Refused {source}: {where} refers to Python's "
                                       f"built-in '{fn}', which is not a model building block.")
            if not _is_keras_builtin_function(fn):
                custom = f"Python function '{fn}'"
        elif not _is_keras_module(module):
            custom = (f"class '{cls}' from module '{module}'" if module
                      else f"custom class '{cls}'")
        elif _in_namespace(module, _NON_MODELING_FUNCTIONS if cls == "function"
                           else _NON_MODELING_CLASSES):
            raise UnsafeModelError(f"Refused {source}: {where} refers to '{module}.{target}', "
                                   "which is not a model building block (it touches files, "
                                   "downloads or Keras settings).")
    if custom and not in_compile:
        raise _custom_error(source, where, custom)


def _check_legacy_function(node: dict, layer: str | None, in_compile: bool, trust: bool,
                           source: str) -> None:
    """tf.keras 2 Lambda configs: "function" + "function_type" ("lambda" code or "raw" name)."""
    where = f"layer '{layer}'" if layer else "the model"
    for fn_key, type_key, module_key in (("function", "function_type", "module"),
                                         ("output_shape", "output_shape_type",
                                          "output_shape_module")):
        kind, value = node.get(type_key), node.get(fn_key)
        if kind is None or value is None:
            continue
        if kind == "lambda":  # marshalled bytecode stored in the file
            if not trust:
                raise _code_error(source, where)
        elif isinstance(value, str) and not in_compile \
                and not _is_keras_module(node.get(module_key)):
            raise _custom_error(source, where, f"function '{value}' from module "
                                               f"'{node.get(module_key)}'")


def _is_keras_module(module: Any) -> bool:
    return isinstance(module, str) and any(
        module == pkg or module.startswith(pkg + ".") for pkg in _KERAS_PACKAGES)


def _in_namespace(module: str, namespaces: tuple[str, ...]) -> bool:
    return any(module == ns or module.startswith(ns + ".") for ns in namespaces)


def _is_keras_builtin_function(name: Any) -> bool:
    """Mirror serialization_lib: module "builtins" resolves only keras.<builtin>.<name>."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        return False
    import importlib  # Keras is imported only for this rare case (compile configs)

    for sub in _BUILTIN_FUNCTION_MODULES:
        try:
            module = importlib.import_module(f"keras.{sub}")
        except ImportError:  # pragma: no cover - keras is a hard dependency
            return False
        if callable(getattr(module, name, None)):
            return True
    return False


# ---------------------------------------------------------------- file readers

def _savedmodel_message(name: str) -> str:
    return (f"{name} is a TensorFlow SavedModel folder; Keras 3 cannot show the layers inside "
            "it. Re-save the model as .keras (model.save('model.keras')) from the code that "
            "built it.")


def _too_big(name: str, what: str) -> ModelLoadError:
    return ModelLoadError(f"{name} has a {what} larger than {MAX_CONFIG_BYTES // 1024**2} MB; "
                          "refusing to read it.")


def _read_keras_config(path: Path, name: str) -> bytes:
    """Return config.json of a .keras zip after structural checks (no extraction)."""
    corrupt = f"{name} is not a valid .keras file (corrupt or not a zip)."
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise UnsafeModelError(f"Refused {name}: it holds {len(infos)} files inside "
                                       f"(more than {MAX_ZIP_MEMBERS}); not a normal .keras "
                                       "file (zip bomb?).")
            unpacked = sum(info.file_size for info in infos)
            if unpacked > MAX_ZIP_UNPACKED_BYTES:
                raise UnsafeModelError(f"Refused {name}: it would unpack to more than "
                                       f"{MAX_ZIP_UNPACKED_BYTES // 1024**3} GiB "
                                       "(zip bomb?).")
            for info in infos:
                member = PurePosixPath(info.filename.replace("\\", "/"))
                if member.is_absolute() or ".." in member.parts or ":" in info.filename:
                    raise UnsafeModelError(f"Refused {name}: it contains a file with a "
                                           f"suspicious path ({info.filename!r}).")
            try:
                info = zf.getinfo("config.json")
            except KeyError:
                raise ModelLoadError(f"{name} is not a valid .keras file (no config.json "
                                     "inside).") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise _too_big(name, "config.json")
            with zf.open(info) as fh:
                data = fh.read(MAX_CONFIG_BYTES + 1)  # never trust the declared size alone
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError,
            NotImplementedError, RuntimeError):
        raise ModelLoadError(corrupt) from None
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_big(name, "config.json")
    return data


def _has_hdf5_signature(path: Path, size: int) -> bool:
    # The superblock sits at 0 or, after a user block, at 512, 1024, 2048, ...
    offsets = [0] + [512 << k for k in range(0, 22) if (512 << k) + 8 <= size]
    with open(path, "rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def _read_h5_config(path: Path, name: str) -> tuple[bytes, bytes | None]:
    """Return (model_config, training_config or None) from a legacy Keras HDF5 file."""
    try:
        is_hdf5 = _has_hdf5_signature(path, path.stat().st_size)
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None
    if not is_hdf5:
        raise ModelLoadError(f"{name} is not an HDF5 file (a .h5 model must be one).")
    import h5py  # a Keras dependency; parses attributes only, no Keras code runs

    try:
        with h5py.File(path, "r") as f:
            model_config = f.attrs.get("model_config")
            training_config = f.attrs.get("training_config")
    except (OSError, ValueError, KeyError, RuntimeError):
        raise ModelLoadError(f"{name} is a damaged HDF5 file and cannot be read.") from None
    if model_config is None:
        raise ModelLoadError(f"{name} holds weights only, no model; save the whole model "
                             "(model.save('model.keras')) and open that file.")
    return _attr_bytes(model_config, name), (
        None if training_config is None else _attr_bytes(training_config, name))


def _attr_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        data = value.encode("utf-8")
    elif isinstance(value, bytes):  # also numpy.bytes_
        data = bytes(value)
    else:
        raise ModelLoadError(f"{name} has an unreadable model config (not JSON text).")
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_big(name, "model config")
    return data


def _parse_json(data: bytes, name: str, what: str) -> Any:
    # Raw check first: catches the switch even where JSON parsing would choke.
    if _UNSAFE_SWITCH.encode() in data:
        _check_string(_UNSAFE_SWITCH, name)
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelLoadError(f"{name} is not a valid Keras model ({what} is not valid "
                             "JSON).") from None
    if not isinstance(config, (dict, list)):
        raise ModelLoadError(f"{name} is not a valid Keras model ({what} is not a model "
                             "config).")
    return config
