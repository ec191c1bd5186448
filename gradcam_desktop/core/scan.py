"""Walk a model config and refuse anything that is not a standard Keras building block.

Every ``{"class_name": ...}`` object is resolved the way Keras would resolve it and must land
in the allowlist (allowlist.py). Besides: Lambda layers and lambda functions (Python code
stored in the file) pass only when the user trusts the file; arguments that make a layer read
a file (a lookup layer's ``vocabulary`` given as a path, any ``*_path``/``*_file``) never
pass; compile configs are never deserialized (nested ones are stripped, see
``strip_nested_compile``), so they are only checked for code.
"""

from __future__ import annotations

import builtins
from typing import Any

from gradcam_desktop.core import allowlist, keras2_allowlist
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError

_UNSAFE_SWITCH = "enable_unsafe_deserialization"
TRUST_HINT = ("Use --trust-model (or 'Trust this file' in the window) only if you trust who "
              "made it: it allows Python code stored in the file (Lambda layers and lambda "
              "functions) and nothing else.")
# Data objects serialization_lib / json_utils decode without looking anything up.
_DATA_OBJECTS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__",
                 "__slice__", "__tuple__", "TensorShape"}
_FOREIGN_WHY = {
    "TFSMLayer": "wraps a separate TensorFlow SavedModel whose layers Grad-CAM cannot see "
                 "(and which may run arbitrary TensorFlow ops)",
    "TorchModuleWrapper": "wraps a pickled PyTorch module, which runs code when loaded",
    "JaxLayer": "wraps JAX Python functions that are not stored in the file",
    "FlaxLayer": "wraps a Flax module, i.e. Python code that is not stored in the file",
}
_COMPILE_KEYS = ("compile_config", "training_config")
# Lookup layers (StringLookup, IntegerLookup, TextVectorization) read a string as a file path.
_FILE_ARGUMENTS = {"vocabulary", "idf_weights", "path", "filepath", "filename", "file",
                   "directory", "dirpath"}
_FILE_SUFFIXES = ("_path", "_file", "_dir", "_filename", "_filepath", "_directory")
#: KerasHub preprocessors and tokenizers store the name their preset file would have
#: (``config_file``): a fixed name that only ``save_to_preset`` uses, never read when loading.
_HUB_PRESET_NAMES = {"config_file": {"preprocessor.json", "tokenizer.json", "image_converter.json",
                                     "audio_converter.json"}}


def scan_config(config: Any, *, trust: bool = False, source: str = "this model", keras: int = 3) -> bool:
    """Raise UnsafeModelError unless ``config`` is made of standard Keras building blocks.

    ``keras`` is the major version that wrote the file: a Keras 2 config is judged against
    Keras 2's own building blocks (keras2_allowlist.py), a Keras 3 one against Keras 3's.

    Returns True when the config holds Python code stored in the file (Lambda layers,
    lambda functions), which only ``trust=True`` lets through; the caller must then load it
    with Keras' safe mode off, which the rest of this scan makes safe to do.
    """
    runs_code = False
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
            runs_code |= _check_object(node, layer, in_compile, trust, source, keras)
        runs_code |= _check_legacy_function(node, layer, in_compile, trust, source, keras)
        if not in_compile:
            _check_file_arguments(node, layer, source)
        stack.extend((node[key], layer, in_compile or key in _COMPILE_KEYS)
                     for key in reversed(list(node)))
    return runs_code


def strip_nested_compile(config: Any) -> bool:
    """Drop the compile configs of nested models (Keras deserializes them even with
    ``compile=False``, which only drops the top-level one). True if any was dropped."""
    stripped = False
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if node is not config and node.get("compile_config") is not None:
                node["compile_config"] = None
                stripped = True
            stack.extend(node.values())
    return stripped


# ---------------------------------------------------------------- rules

def _where(layer: str | None) -> str:
    return f"layer '{layer}'" if layer else "the model"


def _check_string(text: str, source: str) -> None:
    if _UNSAFE_SWITCH in text:
        raise UnsafeModelError(f"Refused {source}: the file tries to switch off Keras safe "
                               f"mode ('{_UNSAFE_SWITCH}'), which only a malicious file does.")


def _code_error(source: str, where: str) -> UnsafeModelError:
    return UnsafeModelError(f"Refused {source}: {where} holds a Python lambda function, which "
                            f"runs code stored in the file. {TRUST_HINT}", trustable=True)


def _custom_error(source: str, where: str, what: str) -> UnsafeModelError:
    return UnsafeModelError(f"Refused {source}: {where} needs custom Python code ({what}) that "
                            "is not part of Keras or the file; Grad-CAM Desktop only opens "
                            "models built from standard Keras layers.")


def _object_name(node: dict) -> str | None:
    cfg = node.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    name = name if isinstance(name, str) else node.get("name")
    return name if isinstance(name, str) else None


def _python_builtin(node: dict) -> str | None:
    fn = node.get("config")
    if node.get("module") == "builtins" and node["class_name"] == "function" \
            and isinstance(fn, str) and hasattr(builtins, fn):
        return fn
    return None


def _check_object(node: dict, layer: str | None, in_compile: bool, trust: bool,
                  source: str, keras: int = 3) -> bool:
    """One {"class_name": ...} object: a layer, model, initializer, function, ..."""
    judge = keras2_allowlist.judge if keras == 2 else allowlist.judge
    cls = node["class_name"]
    where = _where(layer)
    if cls == "__lambda__":
        if not trust:
            raise _code_error(source, where)
        return True
    if cls in _DATA_OBJECTS:
        return False
    if cls.startswith("__"):  # e.g. "__typespec__": resolves TensorFlow classes by name
        raise UnsafeModelError(f"Refused {source}: {where} holds an unknown special object "
                               f"'{cls}'.")
    if in_compile:
        # Never deserialized (compile=False; nested ones are stripped), so custom losses and
        # metrics are fine; Python's builtins are still a sign of a crafted file.
        if (fn := _python_builtin(node)) is not None and judge(node).kind == "custom":
            raise _builtin_error(source, where, fn)
        return False
    verdict = judge(node)
    if keras == 3 and verdict.kind == "ok" and "module" not in node and isinstance(node.get("config"), dict):
        # Legacy (h5) loading turns a config string naming a function of Keras' layers
        # package into that function: only building blocks may be named so.
        refused = allowlist.legacy_function_names()
        for key, value in node["config"].items():
            if key != "name" and isinstance(value, str) and value in refused:
                verdict = allowlist.Verdict("keras", f"keras.layers.{value}")
    if verdict.kind == "ok":
        return False
    if verdict.kind == "hub-missing":
        raise ModelLoadError(f"Cannot open model {source}: it is a KerasHub model ({verdict.label}); "
                             f"install KerasHub support with: {allowlist.HUB_EXTRA}")
    if verdict.kind == "code":
        if not trust:
            raise UnsafeModelError(f"Refused {source}: {where} is a Lambda layer, which runs "
                                   f"Python code stored in the file. {TRUST_HINT}", trustable=True)
        return True
    if verdict.kind == "foreign":
        why = _FOREIGN_WHY.get(verdict.label) or keras2_allowlist.FOREIGN.get(verdict.label, "runs foreign code")
        raise UnsafeModelError(f"Refused {source}: {where} is a {verdict.label}, which {why}.")
    if verdict.kind == "keras":
        raise UnsafeModelError(f"Refused {source}: {where} refers to '{verdict.label}', which "
                               "is not a model building block (Grad-CAM Desktop allows Keras "
                               "layers, activations, initializers, regularizers, constraints "
                               "and ops).")
    if verdict.kind == "unknown":
        written = "Keras 2 (tf.keras)" if keras == 2 else "Keras"
        raise ModelLoadError(f"Cannot open model {source}: {where} is of type "
                             f"'{verdict.label}', which the installed {written} does not know by "
                             "that name: a layer of another Keras version, or custom code that is not "
                             "in the file (File → Load Custom Layers… / --custom-objects).")
    if (fn := _python_builtin(node)) is not None:
        raise _builtin_error(source, where, fn)
    raise _custom_error(source, where, verdict.label)


def _builtin_error(source: str, where: str, fn: str) -> UnsafeModelError:
    return UnsafeModelError(f"Refused {source}: {where} refers to Python's built-in '{fn}', "
                            "which is not a model building block.")


def _check_legacy_function(node: dict, layer: str | None, in_compile: bool, trust: bool,
                           source: str, keras: int = 3) -> bool:
    """tf.keras 2 Lambda configs: "function" + "function_type" ("lambda" code or "raw" name)."""
    runs_code = False
    for fn_key, type_key, module_key in (("function", "function_type", "module"),
                                         ("output_shape", "output_shape_type",
                                          "output_shape_module")):
        kind, value = node.get(type_key), node.get(fn_key)
        if kind is None or value is None:
            continue
        if kind == "lambda":  # marshalled bytecode stored in the file
            if not trust:
                raise _code_error(source, _where(layer))
            runs_code = True
        elif isinstance(value, str) and not in_compile \
                and not allowlist.is_keras_module(node.get(module_key), keras):
            raise _custom_error(source, _where(layer), f"function '{value}' from module "
                                                       f"'{node.get(module_key)}'")
    return runs_code


def _check_file_arguments(node: dict, layer: str | None, source: str) -> None:
    """A string where a layer expects a file path makes Keras read a local file."""
    if "class_name" in node:  # the arguments are in its "config", visited on their own
        return
    for key, value in node.items():
        if not isinstance(value, str) or not value or not isinstance(key, str):
            continue
        lowered = key.lower()
        if value in _HUB_PRESET_NAMES.get(key, ()):
            continue
        if lowered in _FILE_ARGUMENTS or lowered.endswith(_FILE_SUFFIXES):
            shown = value if len(value) <= 80 else value[:79] + "…"
            raise UnsafeModelError(f"Refused {source}: {_where(layer)} would read the file "
                                   f"'{shown}' ({key}); a model may not read files outside "
                                   "itself, trusted or not.")
