"""Your own layers: a Python file that registers Keras classes, run only after the user trusts it.

The file is code: running it is the trust step (``--custom-objects FILE.py`` on the command line,
a confirmation dialog naming the file in the window). What it registers with
``@keras.saving.register_keras_serializable`` is then allowed by the allowlist (allowlist.trust),
like Keras' own layers; a model file is still scanned for everything else (Lambda code, foreign
modules, file-reading arguments, other unregistered classes).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
from pathlib import Path

from . import allowlist
from .errors import ModelLoadError, plain_reason

log = logging.getLogger(__name__)

#: What the CLI and the window say before running the file.
TRUST_WARNING = ("runs the Python file {name} with your permissions, so that the classes it registers "
                 "(@keras.saving.register_keras_serializable) can be loaded. Only for files you trust.")


def load_custom_objects(path: str | Path) -> list[str]:
    """Run the trusted Python file ``path``; return the registered names it added (sorted).

    ModelLoadError (one line) when the file is missing, fails, or registers nothing. Running the
    same file again is harmless: Keras re-registers the names.
    """
    import keras

    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise ModelLoadError(f"Cannot load custom layers from {path}: expected an existing .py file.")
    before = _registered(keras)
    name = "gradcam_custom_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path.name} is not a loadable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything
        sys.modules.pop(name, None)
        log.debug("custom objects file %s failed", path, exc_info=True)
        raise ModelLoadError(f"Cannot load custom layers from {path.name}: {plain_reason(error)}") from error
    after = _registered(keras)
    added = sorted(key for key, obj in after.items() if before.get(key) is not obj)
    if not added:
        raise ModelLoadError(f"{path.name} registered no Keras classes: decorate them with "
                             "@keras.saving.register_keras_serializable() (Keras 2: "
                             "@tf_keras.saving.register_keras_serializable()).")
    allowlist.trust([after[key] for key in added])
    return sorted(key.removeprefix("keras2:") for key in added)


def _registered(keras) -> dict:
    """Keras 3's registered objects, and Keras 2's when the file (or a model) brought tf_keras in."""
    objects = dict(keras.saving.get_custom_objects())
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None:
        objects.update({f"keras2:{key}": obj for key, obj in tf_keras.saving.get_custom_objects().items()})
    return objects
