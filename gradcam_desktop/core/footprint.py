"""What building a model from its config would allocate, found without allocating it.

Keras allocates every weight when it builds a model from its config, before it reads the
weights file; a 20 KB config that declares ``Dense(units=100_000_000)`` takes gigabytes.
So the config is built once *abstractly* first: inside a TensorFlow graph (tensors are
symbolic, nothing is computed) and a Keras ``StatelessScope`` that does not initialize
variables. The variables then tell their shapes and dtypes, the layers their output shapes,
at the cost of Keras deserializing the config one more time (~0.1–2 s for real models).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from gradcam_desktop.core.errors import ModelLoadError, plain_reason


@dataclass(frozen=True)
class Footprint:
    """Sizes a built model would have, in bytes (activations for one image)."""

    weight_bytes: int
    variables: int
    largest: str  # "layer/var (shape)" of the biggest variable, for messages
    activation_bytes: int


def measure(config: dict, *, legacy: bool, safe_mode: bool, name: str, keras_version: int = 3) -> Footprint:
    """Build ``config`` abstractly and measure it; Keras errors become ModelLoadError.

    ``legacy`` selects the h5 loader's deserializer (also a SavedModel's Keras metadata),
    ``keras_version`` the Keras that wrote it (2 or 3). The config must already have passed the
    allowlist scan: building it runs the ``from_config``/``build`` code of its classes.
    """
    if keras_version == 2:
        return _measure_keras2(config, legacy=legacy, safe_mode=safe_mode, name=name)
    import tensorflow as tf
    import keras
    from keras.src.backend.common import global_state
    from keras.src.saving import serialization_lib

    pending = list(global_state.get_global_attribute("uninitialized_variables", []) or [])
    try:
        with tf.Graph().as_default(), keras.StatelessScope(initialize_variables=False), \
                serialization_lib.SafeModeScope(safe_mode):
            model = _deserialize(config, legacy=legacy, safe_mode=safe_mode)
            return _measure_model(model)
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - Keras raises many types for broken configs
        raise ModelLoadError(f"Cannot open model {name}: {plain_reason(error)}") from error
    finally:  # the abstract variables must never be initialized later by someone else
        global_state.set_global_attribute("uninitialized_variables", pending)


def _deserialize(config: dict, *, legacy: bool, safe_mode: bool) -> Any:
    """The same calls keras.saving.load_model makes, on a copy (Keras edits configs)."""
    import json

    if legacy:
        from keras.src.legacy.saving import json_utils, saving_options, saving_utils

        copy = json_utils.decode(json.dumps(config))
        with saving_options.keras_option_scope(use_legacy_config=True):
            return saving_utils.model_from_config(copy, custom_objects={})
    from keras.src.saving import serialization_lib

    copy = json.loads(json.dumps(config))
    if isinstance(copy, dict):
        copy["compile_config"] = None  # what compile=False does
    from gradcam_desktop.core.hub import without_task_compile

    without_task_compile(copy)
    with serialization_lib.ObjectSharingScope():
        return serialization_lib.deserialize_keras_object(copy, safe_mode=safe_mode)


def _measure_keras2(config: dict, *, legacy: bool, safe_mode: bool, name: str) -> Footprint:
    """Keras 2 builds a model inside a TensorFlow graph without running anything: its variables
    are graph nodes whose initializers never run, so they tell their shapes and take no memory."""
    import json

    import tensorflow as tf

    from gradcam_desktop.core.keras2 import application_objects, tf_keras

    tf_keras()
    from tf_keras.src.saving import serialization_lib
    from tf_keras.src.saving.legacy import model_config
    from tf_keras.src.saving.legacy.saved_model import json_utils

    # Legacy configs are decoded as Keras 2 decodes them (tuples, TensorShapes).
    copy = json_utils.decode(json.dumps(config)) if legacy else json.loads(json.dumps(config))
    try:
        with tf.Graph().as_default(), serialization_lib.SafeModeScope(safe_mode):
            if legacy:
                model = model_config.model_from_config(copy, custom_objects=application_objects())
            else:
                if isinstance(copy, dict):
                    copy["compile_config"] = None
                model = serialization_lib.deserialize_keras_object(
                    copy, custom_objects=application_objects(), safe_mode=safe_mode)
            return _measure_model(model)
    except ModelLoadError:
        raise
    except Exception as error:  # noqa: BLE001 - Keras raises many types for broken configs
        raise ModelLoadError(f"Cannot open model {name}: {plain_reason(error)}") from error


def _itemsize(dtype: Any) -> int:
    import numpy as np

    try:
        return np.dtype(dtype).itemsize
    except TypeError:  # bfloat16, float8_*: NumPy does not know them; the name tells
        bits = "".join(ch for ch in str(dtype).split("_")[0] if ch.isdigit())
        return max(1, int(bits) // 8) if bits else 4


def _measure_model(model: Any) -> Footprint:
    weight_bytes, largest, largest_bytes = 0, "", -1
    for variable in getattr(model, "weights", []):
        size = math.prod(int(side) for side in variable.shape) * _itemsize(variable.dtype)
        weight_bytes += size
        if size > largest_bytes:
            path = getattr(variable, "path", None) or variable.name.removesuffix(":0")  # Keras 2: name
            largest, largest_bytes = f"{path} {tuple(variable.shape)}", size
    return Footprint(weight_bytes, len(getattr(model, "weights", [])), largest,
                     _activation_bytes(model))


def _activation_bytes(model: Any) -> int:
    """Bytes of every layer output for a batch of one image (unknown sides count as 1)."""
    total, seen = 0, set()
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        stack.extend(getattr(layer, "_layers", []) or [])
        for node in getattr(layer, "_inbound_nodes", []) or []:
            for tensor in getattr(node, "output_tensors", []) or []:
                shape = getattr(tensor, "shape", None) or ()
                total += math.prod(int(side or 1) for side in shape) \
                    * _itemsize(getattr(tensor, "dtype", "float32"))
    return total


def available_memory() -> int:
    """Bytes this process may still allocate: free RAM, capped by a container limit."""
    free = _meminfo_available() or _sysconf_available() or _windows_available()
    free = free or 4 * 1024**3  # unknown platform: assume a modest machine
    limit = _cgroup_headroom()
    return min(free, limit) if limit else free


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    for pages in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):  # macOS has only the total
        try:
            return os.sysconf(pages) * os.sysconf("SC_PAGE_SIZE") // (1 if "AV" in pages else 2)
        except (AttributeError, ValueError, OSError):
            continue
    return None


def _windows_available() -> int | None:
    if sys.platform != "win32":
        return None
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong),
                    ("total_phys", ctypes.c_ulonglong), ("avail_phys", ctypes.c_ulonglong),
                    ("total_page", ctypes.c_ulonglong), ("avail_page", ctypes.c_ulonglong),
                    ("total_virtual", ctypes.c_ulonglong), ("avail_virtual", ctypes.c_ulonglong),
                    ("avail_extended", ctypes.c_ulonglong)]

    status = MemoryStatus()
    status.length = ctypes.sizeof(MemoryStatus)
    kernel32 = getattr(ctypes, "windll").kernel32  # noqa: B009 - exists on Windows only
    if kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return int(status.avail_phys)
    return None


def _cgroup_headroom() -> int | None:
    """cgroup v2 memory.max minus memory.current (a container's limit, not the host's RAM)."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as fh:
            limit = fh.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as fh:
            used = int(fh.read().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def human(size: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, as file managers show)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
