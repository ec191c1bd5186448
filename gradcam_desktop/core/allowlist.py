"""What a model config may name: Keras layers, activations, initializers, regularizers,
constraints, ops and dtype policies, nothing else (an allowlist, not a denylist).

The tables are built from what Keras itself registers (its exported names and the lookup
dicts its deserializers use), so they follow the installed Keras. Each config object is
resolved the way ``keras.src.saving.serialization_lib`` (``module``/``class_name``/
``registered_name``) or the legacy h5 loader (``class_name`` only) would resolve it, without
importing anything, and the object it lands on must be in the tables. Keras is imported on
first use only: the scanner's callers load Keras right after anyway.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

#: Public Keras namespaces whose every export is model math.
_PUBLIC_PREFIXES = ("keras.layers.", "keras.activations.", "keras.initializers.",
                    "keras.regularizers.", "keras.constraints.", "keras.ops.",
                    "keras.dtype_policies.", "keras.quantizers.")
_PUBLIC_NAMES = ("keras.Model", "keras.Sequential", "keras.InputSpec", "keras.DTypePolicy",
                 "keras.FloatDTypePolicy", "keras.random.SeedGenerator")
#: Keras-internal modules whose Operation subclasses (layers, model classes, op nodes of a
#: functional graph) are building blocks: e.g. ConvNeXt's LayerScale, keras.src.ops.numpy.Add.
_INTERNAL_PREFIXES = ("keras.src.layers.", "keras.src.models.", "keras.src.applications.",
                      "keras.src.legacy.layers", "keras.src.ops.", "keras.src.activations.",
                      "keras.src.quantizers.")
#: Resolvers and helpers exported next to the building blocks; not building blocks themselves.
_EXCLUDED_NAMES = frozenset({"get", "serialize", "deserialize", "Input"})
#: Layers that bring in code or files from outside the Keras format, by class name.
FOREIGN_LAYERS = ("TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer")
_KERAS_PACKAGES = ("keras", "keras_hub", "keras_cv", "keras_nlp")
#: KerasHub (Keras 3's model library) is an optional extra: its registered classes are installed,
#: reviewed code like Keras' own, so a file may name them when the package is installed.
HUB_PACKAGE = "keras_hub"
HUB_EXTRA = 'pip install "gradcam-desktop[hub]"'
#: The only KerasHub *functions* a config may name, each with the reason. KerasHub registers every
#: function it exports (uploading presets, training tokenizers, decoding predictions, ...); those
#: are tools, not building blocks, and Keras would call one named as an activation or initializer.
HUB_FUNCTIONS = {
    "keras_hub.src.utils.keras_utils.gelu_approximate":
        "GELU's tanh approximation: the activation KerasHub's ALBERT and ELECTRA layers use, stored by "
        "name in the config of a TransformerEncoder or MaskedLMHead built with it",
}


#: Objects registered by a Python file the user chose to trust (custom_objects.py), by id().
_TRUSTED: dict[int, Any] = {}


def trust(objects: list) -> None:
    """Allow these registered classes and functions (from a file the user trusted)."""
    _TRUSTED.update((id(obj), obj) for obj in objects)


def is_trusted(obj: Any) -> bool:
    """Whether ``obj`` was registered by a Python file the user trusted."""
    return _TRUSTED.get(id(obj)) is obj


@dataclass(frozen=True)
class Verdict:
    """What a config object resolves to: ``kind`` is ok, code, foreign, keras, custom or
    unknown (a name Keras cannot resolve either)."""

    kind: str
    label: str = ""


@dataclass(frozen=True)
class _Tables:
    allowed: frozenset[int]           # id() of allowed classes and functions
    keep_alive: tuple                 # the objects behind those ids
    lambda_cls: type
    foreign: dict[int, str]           # id() -> class name
    legacy_dicts: tuple[dict, ...]    # the name -> object dicts legacy loading looks in
    operation: type


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    import keras  # noqa: F401  - registers every export
    from keras.src import activations, constraints, dtype_policies, initializers, regularizers
    from keras.src import layers as src_layers
    from keras.src.api_export import REGISTERED_NAMES_TO_OBJS
    from keras.src.models import Functional, Model, Sequential
    from keras.src.ops.operation import Operation

    objects: list[Any] = []
    for name, obj in REGISTERED_NAMES_TO_OBJS.items():
        short = name.rsplit(".", 1)[-1]
        if (name.startswith(_PUBLIC_PREFIXES) or name in _PUBLIC_NAMES) \
                and short not in _EXCLUDED_NAMES:
            objects.append(obj)
    name_dicts = [m.ALL_OBJECTS_DICT for m in (activations, initializers, regularizers,
                                               constraints, dtype_policies)]
    for table in name_dicts:
        objects.extend(obj for key, obj in table.items() if key not in _EXCLUDED_NAMES)
    objects.extend((Functional, Model, Sequential, src_layers.InputLayer))
    foreign = {id(getattr(keras.layers, name)): name for name in FOREIGN_LAYERS}
    lambda_cls = keras.layers.Lambda
    allowed = frozenset(id(obj) for obj in objects
                        if id(obj) not in foreign and obj is not lambda_cls)
    # What legacy (h5) loading looks class names up in: the layers package namespace plus
    # the model classes it adds, and each kind's name dict.
    legacy_layers = dict(vars(src_layers))
    legacy_layers.update(InputLayer=src_layers.InputLayer, Functional=Functional,
                         Model=Model, Sequential=Sequential)
    return _Tables(allowed, tuple(objects), lambda_cls, foreign,
                   (legacy_layers, *name_dicts), Operation)


def _judge(obj: Any, label: str) -> Verdict:
    tables = _tables()
    if obj is tables.lambda_cls:
        return Verdict("code", label)
    if id(obj) in tables.foreign:
        return Verdict("foreign", tables.foreign[id(obj)])
    if id(obj) in tables.allowed:
        return Verdict("ok", label)
    if isinstance(obj, type) and issubclass(obj, tables.operation) \
            and obj.__module__.startswith(_INTERNAL_PREFIXES):
        return Verdict("ok", label)
    return Verdict("keras", label)


def is_keras_module(module: Any, keras: int = 3) -> bool:
    """True for ``keras`` and its submodules (what Keras resolves as its own); Keras 2 also
    resolves ``tf_keras`` and its submodules as its own."""
    packages = ("keras", "tf_keras") if keras == 2 else ("keras",)
    return isinstance(module, str) and any(module == p or module.startswith(p + ".") for p in packages)


def judge(node: dict) -> Verdict:
    """Resolve one ``{"class_name": ...}`` config object the way Keras would, then judge it.

    ``custom`` means code outside Keras (another module, a registered name), ``keras`` a
    Keras object that is not a model building block (files, downloads, settings,
    deserializers), ``foreign`` a wrapper of another framework, ``code`` a Lambda,
    ``unknown`` a name that Keras would not find (e.g. a keras.ops class named in an .h5).
    """
    from keras.src.saving import object_registration, serialization_lib

    cls = node["class_name"]
    is_function = cls == "function"
    name = node.get("config") if is_function else cls
    if not isinstance(name, str):
        return Verdict("custom", f"function {name!r}")
    registered = node.get("registered_name", cls)
    if _TRUSTED:
        # Keras looks registered names up first: a name the trusted file registered resolves there.
        key = name if is_function else registered
        found = object_registration.get_registered_object(key) if isinstance(key, str) else None
        if found is not None and id(found) in _TRUSTED:
            return Verdict("ok", str(key))
    if names_hub(node):
        return _judge_hub(node, name, registered if isinstance(registered, str) else None, is_function)
    if isinstance(registered, str) and ">" in registered \
            and registered.split(">", 1)[0] not in _KERAS_PACKAGES:
        return Verdict("custom", f"registered {'function' if is_function else 'class'} "
                                 f"'{registered}'")
    if ">" in name:
        return Verdict("custom", f"registered {'function' if is_function else 'class'} "
                                 f"'{name}'")
    # Objects registered in this process take precedence in Keras' lookup.
    key = name if is_function else registered
    found = object_registration.get_registered_object(key) if isinstance(key, str) else None
    if found is not None:
        return _judge(found, key)
    if "module" not in node:
        return _judge_legacy(name)
    module = node["module"]
    if module == "builtins" and is_function:
        for kind in serialization_lib.BUILTIN_MODULES:  # Keras' own search order
            obj = _exported(f"keras.{kind}.{name}")
            if obj is not None:
                return _judge(obj, f"keras.{kind}.{name}")
        return Verdict("custom", f"Python function '{name}'")
    if not is_keras_module(module):
        return Verdict("custom", f"class '{cls}' from module '{module}'" if module
                       else f"custom class '{cls}'")
    label = f"{module}.{name}"
    if label in serialization_lib.NON_MODELING_APIS:
        return Verdict("keras", label)
    obj = _exported(label)
    if obj is None:  # Keras then imports the module and takes a KerasSaveable class from it
        loaded = sys.modules.get(module)
        obj = vars(loaded).get(name) if loaded is not None else None
        from keras.src.saving.keras_saveable import KerasSaveable

        if obj is None:
            return Verdict("unknown", label)
        if not (isinstance(obj, type) and issubclass(obj, KerasSaveable)):
            return Verdict("keras", label)
    return _judge(obj, label)


def names_hub(node: dict) -> bool:
    """True when a config object names KerasHub: its registered name, module or function name."""
    cls = node.get("class_name")
    values = (node.get("registered_name"), node.get("module"), node.get("config") if cls == "function" else cls)
    return any(isinstance(value, str) and (value.startswith(HUB_PACKAGE + ">") or value == HUB_PACKAGE
                                           or value.startswith(HUB_PACKAGE + ".")) for value in values)


@lru_cache(maxsize=1)
def hub_installed() -> bool:
    """Whether the keras_hub package is installed (without importing it)."""
    try:
        return importlib.util.find_spec(HUB_PACKAGE) is not None
    except (ImportError, ValueError):
        return False


def _judge_hub(node: dict, name: str, registered: str | None, is_function: bool) -> Verdict:
    """A KerasHub object: ``hub-missing`` without the package; with it, ``ok`` when the name
    resolves (as Keras resolves it) to a building block defined in keras_hub itself: a class that
    is a Keras Operation (its layers, models, backbones, tasks, preprocessors, tokenizers, image
    converters) or, named as a function, one of HUB_FUNCTIONS. Its other classes (samplers, metrics)
    and functions are tools, not model parts."""
    module = node.get("module")
    label = name if is_function else registered or (f"{module}.{name}" if isinstance(module, str) else name)
    if not hub_installed():
        return Verdict("hub-missing", label)
    from keras.src.saving import object_registration

    importlib.import_module(HUB_PACKAGE)  # registers its classes with Keras
    key = name if is_function else registered
    found = object_registration.get_registered_object(key) if isinstance(key, str) else None
    if found is None and isinstance(module, str) and module.startswith(HUB_PACKAGE + "."):
        # Keras itself imports a keras_hub module named in the file to find the class there.
        try:
            found = vars(importlib.import_module(module)).get(name)
        except Exception:  # noqa: BLE001 - a module name that does not import resolves nothing
            found = None
    if found is None:
        return Verdict("unknown", label)
    if not str(getattr(found, "__module__", "")).startswith(HUB_PACKAGE + "."):
        return Verdict("custom", f"'{label}', registered under KerasHub's name by other code")
    tables = _tables()
    if is_function:
        return Verdict("ok", label) if any(found is obj for obj in _hub_functions()) else Verdict("keras", label)
    if not (isinstance(found, type) and issubclass(found, tables.operation)) or issubclass(found, tables.lambda_cls):
        return Verdict("keras", label)
    foreign = next((cls for cls in found.__mro__ if id(cls) in tables.foreign), None)
    return Verdict("foreign", tables.foreign[id(foreign)]) if foreign is not None else Verdict("ok", label)


@lru_cache(maxsize=1)
def _hub_functions() -> tuple:
    """The objects behind HUB_FUNCTIONS (keras_hub is imported by then)."""
    found = []
    for path in HUB_FUNCTIONS:
        module, _, attribute = path.rpartition(".")
        try:
            found.append(getattr(importlib.import_module(module), attribute))
        except (ImportError, AttributeError):  # another KerasHub version: the name is not allowed
            continue
    return tuple(found)


def _judge_legacy(name: str) -> Verdict:
    """Legacy configs name objects only by class; every table that knows the name counts."""
    found = [table[name] for table in _tables().legacy_dicts if name in table]
    if not found:
        return Verdict("unknown", name)
    verdicts = [_judge(obj, name) for obj in found]
    return next((v for v in verdicts if v.kind != "ok"), verdicts[0])


@lru_cache(maxsize=1)
def legacy_function_names() -> frozenset[str]:
    """Names legacy loading turns from plain strings into functions and that are not allowed."""
    import inspect

    layers = _tables().legacy_dicts[0]
    return frozenset(name for name, obj in layers.items()
                     if inspect.isfunction(obj) and _judge(obj, name).kind != "ok")


def _exported(name: str) -> Any:
    from keras.src.api_export import get_symbol_from_name

    return get_symbol_from_name(name)
