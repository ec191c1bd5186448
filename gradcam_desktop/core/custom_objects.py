"""Your own layers: a Python file that defines and registers Keras classes, run only when trusted.

The file is code: running it is the trust step (``--custom-objects FILE.py`` on the command line,
a confirmation dialog naming the file in the window). The classes and functions **defined in that
file** and registered with ``@keras.saving.register_keras_serializable`` are then allowed by the
allowlist (allowlist.trust), like Keras' own layers; what its imports register is not (a helper
module is code the user did not name). A model file is still scanned for everything else (Lambda
code, foreign modules, file-reading arguments, other unregistered classes).

``--custom-objects`` runs the file only for a model file that needs it, and only after that model
passed every check that does not need the custom classes (``load_for_model``): for the demo, a zoo
model or a file built from Keras' own layers it is not run at all.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from . import allowlist, scan
from .errors import ModelLoadError, UnsafeModelError
from .types import ModelSpec

log = logging.getLogger(__name__)

#: What the CLI and the window say before running the file.
TRUST_WARNING = ("runs the Python file {name} with your permissions, so that the classes it defines and registers "
                 "(@keras.saving.register_keras_serializable) can be loaded. Only for files you trust.")


@dataclass(frozen=True)
class CustomObjects:
    """What ``load_for_model`` did with the file: ran it (and what it registered) or why not."""

    file: Path
    ran: bool
    registered: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def note(self) -> str:
        """One line for the user."""
        if self.ran:
            return f"ran {self.file.name}: registered {', '.join(self.registered)}."
        return f"did not run {self.file.name}: {self.reason}."


def load_for_model(path: str | Path, model: str | os.PathLike | ModelSpec, *, trust: bool = False) -> CustomObjects:
    """``--custom-objects path`` for opening ``model`` (a spec or path): run the trusted file only
    when the model file needs classes that neither Keras nor the file define, and only once it has
    passed every check that does not need them; then the classes it needs must be ones the file
    itself defines.

    UnsafeModelError/ModelLoadError (one line) when the model fails a check (the file has not run
    then), when the file fails, or when it does not define what the model needs.
    """
    from . import safety

    file = _checked(path)
    spec = ModelSpec.parse(model)
    if spec.kind != "file" or spec.path is None:
        who = "the demo model" if spec.kind == "demo" else spec.label
        return CustomObjects(file, False, reason=f"{who} needs no custom classes")
    # Every check of the model file, with the classes it needs from outside Keras held back: a
    # refusal for anything else (Lambda code, a file it would read, a zip bomb, ...) comes first.
    with scan.deferring_custom() as deferred:
        safety.check_model_file(spec.path, trust=trust)
    if not deferred.needs:
        return CustomObjects(file, False, reason=f"{spec.label} needs no custom classes")
    names = load_custom_objects(file)
    with scan.deferring_custom() as still:
        for config, source, keras in deferred.configs:
            scan.scan_config(config, trust=trust, source=source, keras=keras)
    if still.needs:
        raise _not_defined(still.needs, file)
    return CustomObjects(file, True, names)


def _not_defined(needs: list[scan.Need], file: Path) -> UnsafeModelError:
    """The model still needs a class or function after the file ran: say which, and what counts."""
    first = needs[0]
    more = f" (and {len(needs) - 1} more)" if len(needs) > 1 else ""
    return UnsafeModelError(
        f"Refused {first.source}: {first.where} needs {first.what}{more}, which {file.name} does not define; only "
        f"the classes and functions defined in {file.name} itself are trusted, not what its imports register.")


def load_custom_objects(path: str | Path) -> list[str]:
    """Run the trusted Python file ``path`` now; return the registered names of the classes and
    functions it defines (sorted), which the allowlist then allows.

    ModelLoadError (one line) when the file is missing, fails (an exception, ``sys.exit()``), or
    defines and registers nothing. KeyboardInterrupt is the user's and passes. Running the same
    file again is harmless: Keras re-registers the names.
    """
    import keras

    path = _checked(path)
    before = _registered(keras)
    name = "gradcam_custom_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"{path.name} is not a loadable Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # noqa: BLE001 - the user's code may raise anything
        sys.modules.pop(name, None)
        log.debug("custom objects file %s failed", path, exc_info=True)
        raise ModelLoadError(f"Cannot load custom layers from {path.name}: {_failure(error, path)}") from None
    after = _registered(keras)
    added = {key: obj for key, obj in after.items() if before.get(key) is not obj}
    # Only what the file itself defines: a class or function keeps the module it was defined in.
    own = sorted(key for key, obj in added.items() if getattr(obj, "__module__", None) == name)
    if not own:
        imported = f" (its imports registered {', '.join(sorted(k.removeprefix('keras2:') for k in added))}, which " \
                   "are not trusted)" if added else ""
        raise ModelLoadError(f"{path.name} defines no registered Keras classes or functions{imported}: define them "
                             "in the file and decorate them with @keras.saving.register_keras_serializable() "
                             "(Keras 2: @tf_keras.saving.register_keras_serializable()).")
    allowlist.trust([added[key] for key in own])
    return sorted(key.removeprefix("keras2:") for key in own)


def _checked(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise ModelLoadError(f"Cannot load custom layers from {path}: expected an existing .py file.")
    return path


def _failure(error: BaseException, path: Path) -> str:
    """What went wrong in the user's file, in one line, and what to do."""
    if isinstance(error, SystemExit):
        return (f"it called sys.exit({error.code!r}) while being loaded; a file of custom layers must only "
                "define them: remove that call")
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == path]
    line = f" (line {frames[-1].lineno})" if frames else ""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    if len(text) > 200:
        text = text[:199] + "…"
    return f"{text}{line}; fix the file and try again"


def _registered(keras) -> dict:
    """Keras 3's registered objects, and Keras 2's when the file (or a model) brought tf_keras in."""
    objects = dict(keras.saving.get_custom_objects())
    tf_keras = sys.modules.get("tf_keras")
    if tf_keras is not None:
        objects.update({f"keras2:{key}": obj for key, obj in tf_keras.saving.get_custom_objects().items()})
    return objects
