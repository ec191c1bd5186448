"""Walk a model config and refuse anything that is not a standard Keras building block.

Every ``{"class_name": ...}`` object is resolved the way Keras would resolve it and must land
in the allowlist (allowlist.py). Besides: Lambda layers and lambda functions (Python code
stored in the file) pass only when the user trusts the file; arguments that make a layer read
a file (a lookup layer's ``vocabulary`` or a KerasHub tokenizer's ``proto``/``merges`` given as
a path, any ``*_path``/``*_file``) never pass, trusted or not; compile configs are never
deserialized (nested ones are stripped, see ``strip_nested_compile``), so they are only checked
for code.

``deferring_custom()`` is for ``--custom-objects``: inside it, classes and functions that neither
Keras nor the file define are collected instead of refused, so that the model file can pass every
other check before the user's Python file is run to define them (custom_objects.py).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from gradcam_desktop.core import allowlist, hub, keras2_allowlist
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
# Lookup layers (StringLookup, IntegerLookup, TextVectorization) read a string as a file path,
# and so do KerasHub's tokenizers (hub.FILE_ARGUMENTS).
_FILE_ARGUMENTS = {"vocabulary", "idf_weights", "path", "filepath", "filename", "file",
                   "directory", "dirpath", *hub.FILE_ARGUMENTS}
_FILE_SUFFIXES = ("_path", "_file", "_dir", "_filename", "_filepath", "_directory")
#: KerasHub preprocessors and tokenizers store the name their preset file would have
#: (``config_file``): a fixed name that only ``save_to_preset`` uses, never read when loading.
_HUB_PRESET_NAMES = {"config_file": {"preprocessor.json", "tokenizer.json", "image_converter.json",
                                     "audio_converter.json"}}


@dataclass(frozen=True)
class Need:
    """One class or function a config needs that neither Keras nor the file defines."""

    source: str    # the model file's name
    where: str     # "layer 'x'" or "the model"
    what: str      # e.g. "registered class 'Pkg>Name'", "type 'Relu'"
    error: ModelLoadError  # the refusal it stands for


@dataclass
class Deferred:
    """What configs need that neither Keras nor the file define, collected by deferring_custom()."""

    needs: list[Need] = field(default_factory=list)  # in the order met
    configs: list[tuple[Any, str, int]] = field(default_factory=list)  # (config, source, keras) that needed any


_DEFERRED: ContextVar[Deferred | None] = ContextVar("gradcam_deferred_custom", default=None)


@contextmanager
def deferring_custom() -> Iterator[Deferred]:
    """Collect custom and unknown classes instead of refusing them (everything else is still refused).

    Inside it, ``scan_config`` reports a config that needs them as needing code (True): it cannot be
    measured before its classes exist, so check_model_file skips that one check, as it does for
    trusted Lambda code, and runs all the others. What such a check returns must never be loaded.
    """
    deferred = Deferred()
    token = _DEFERRED.set(deferred)
    try:
        yield deferred
    finally:
        _DEFERRED.reset(token)


def scan_config(config: Any, *, trust: bool = False, source: str = "this model", keras: int = 3) -> bool:
    """Raise UnsafeModelError unless ``config`` is made of standard Keras building blocks.

    ``keras`` is the major version that wrote the file: a Keras 2 config is judged against
    Keras 2's own building blocks (keras2_allowlist.py), a Keras 3 one against Keras 3's.

    Returns True when the config holds Python code stored in the file (Lambda layers,
    lambda functions), which only ``trust=True`` lets through; the caller must then load it
    with Keras' safe mode off, which the rest of this scan makes safe to do.
    """
    deferred = _DEFERRED.get()
    held = len(deferred.needs) if deferred is not None else 0
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
            runs_code |= _check_registered_names(node, layer, trust, source, keras)
        stack.extend((node[key], layer, in_compile or key in _COMPILE_KEYS)
                     for key in reversed(list(node)))
    if deferred is not None and len(deferred.needs) > held:
        deferred.configs.append((config, source, keras))
        return True
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


def _refuse_custom(error: ModelLoadError, source: str, where: str, what: str) -> None:
    """A class or function neither Keras nor the file defines: refused, or held back while deferring."""
    deferred = _DEFERRED.get()
    if deferred is None:
        raise error
    deferred.needs.append(Need(source, where, what, error))


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
                               "and ops, and KerasHub's layers and models).")
    if verdict.kind == "unknown":
        written = "Keras 2 (tf.keras)" if keras == 2 else "Keras"
        _refuse_custom(ModelLoadError(
            f"Cannot open model {source}: {where} is of type '{verdict.label}', which the installed "
            f"{written} does not know by that name: a layer of another Keras version, or custom code "
            "that is not in the file (File → Load Custom Layers… / --custom-objects)."),
            source, where, f"type '{verdict.label}'")
        return False
    if (fn := _python_builtin(node)) is not None:
        raise _builtin_error(source, where, fn)
    _refuse_custom(_custom_error(source, where, verdict.label), source, where, verdict.label)
    return False


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


#: Keys whose strings name the object itself (judged by _check_object), not an argument.
_OBJECT_KEYS = ("class_name", "registered_name", "module")
#: Arguments whose string Keras looks up by registered name (tf.keras writes a registered custom
#: activation as its name): one not registered yet may be what a --custom-objects file defines.
_NAMED_ARGUMENTS = ("activation", "initializer", "regularizer", "constraint")


def _check_registered_names(node: dict, layer: str | None, trust: bool, source: str, keras: int) -> bool:
    """A plain string argument naming a registered object ("Pkg>name") is an object too.

    Keras resolves an initializer given as a string, and Keras 2 an activation, through the
    registry of ``register_keras_serializable`` names, which holds every function KerasHub exports
    and whatever a custom-objects file (or its imports) registered; the resolved object is then
    called. So such a string is judged like the object it names.
    """
    runs_code = False
    for key, value in node.items():
        values = value if isinstance(value, list) else [value]
        if key in _OBJECT_KEYS or (key == "config" and node.get("class_name") == "function"):
            continue
        for text in values:
            if not isinstance(text, str) or ">" not in text:
                continue
            found = _registered(text, keras)
            if found is not None:
                reference = {"class_name": text, "config": {}} if isinstance(found, type) \
                    else {"class_name": "function", "config": text}
                runs_code |= _check_object(reference, layer, False, trust, source, keras)
            elif _DEFERRED.get() is not None and isinstance(key, str) and key.endswith(_NAMED_ARGUMENTS) \
                    and value is text:
                where = _where(layer)
                _refuse_custom(_custom_error(source, where, f"registered name '{text}'"), source, where,
                               f"registered name '{text}'")
    return runs_code


def _registered(name: str, keras: int) -> Any:
    """What Keras (2 or 3) would find under a registered name right now, KerasHub's names included."""
    if keras == 2:
        from tf_keras.src.saving import object_registration as keras2_registration

        return keras2_registration.get_registered_object(name)
    from keras.src.saving import object_registration

    if name.split(">", 1)[0] in ("keras_hub", "keras_nlp") and allowlist.hub_installed():
        import importlib

        importlib.import_module(allowlist.HUB_PACKAGE)  # registers its names, as a KerasHub model would
    return object_registration.get_registered_object(name)


def _check_file_arguments(node: dict, layer: str | None, source: str) -> None:
    """A string where a layer expects a file path makes Keras read a local file.

    Every dict is checked, objects too: a layer's arguments are its "config", but a config that
    also holds a "class_name" (a data object's, say) must not hide them.
    """
    for key, value in node.items():
        if not isinstance(value, str) or not value or not isinstance(key, str):
            continue
        lowered = key.lower()
        if value in _HUB_PRESET_NAMES.get(key, ()) or hub.is_inline_proto(key, value):
            continue
        if lowered in _FILE_ARGUMENTS or lowered.endswith(_FILE_SUFFIXES):
            shown = value if len(value) <= 80 else value[:79] + "…"
            raise UnsafeModelError(f"Refused {source}: {_where(layer)} would read the file "
                                   f"'{shown}' ({key}); a model may not read files outside "
                                   "itself, trusted or not.")
