"""Load a checked Keras 2 model (tf.keras / ``tf_keras``): .h5, .keras and SavedModel folders.

Keras 2 files are opened by Keras 2 itself, the package that wrote them (``tf_keras``, released with
each TensorFlow version): its legacy h5 loader, its .keras loader and its SavedModel loader. Every
file has passed safety.check_model_file first — the config against Keras 2's own building blocks
(keras2_allowlist.py), and a SavedModel's graphs against an allowlist of operations
(savedmodel.py) — so by the time Keras 2 reads it, it holds nothing but layers and weights (and, only
when the user trusted the file, Lambda code).
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Lines tf_keras logs while loading that say nothing to a user of an uncompiled model.
_QUIET = re.compile(r"No training configuration found|compiled metrics have yet to be built|"
                    r"SavedModel saved prior to TF 2\.5|Skipping full serialization")


def tf_keras():
    """The Keras 2 package, imported on first use (a Keras 3 user never pays for it)."""
    try:
        import tf_keras as package
    except ImportError as error:  # a broken install: tf_keras is a dependency
        from .errors import ModelLoadError

        raise ModelLoadError("This is a Keras 2 (tf.keras) model, and the tf_keras package that "
                             "opens those is not installed: pip install tf_keras") from error
    return package


def application_objects() -> dict[str, Any]:
    """Layers that tf_keras' own applications define outside its layers package (ConvNeXt's
    LayerScale and StochasticDepth): Keras 2 code, but its loaders do not find them by name."""
    from tf_keras.src.applications import convnext

    return {"LayerScale": convnext.LayerScale, "StochasticDepth": convnext.StochasticDepth}


def load(path: Path, *, kind: str, runs_code: bool) -> Any:
    """The model in ``path`` (``kind``: "h5", "keras" or "savedmodel"), uncompiled."""
    package = tf_keras()
    with warnings.catch_warnings(), _quiet_tensorflow_logs():
        warnings.simplefilter("ignore")
        if kind == "keras":
            return _load_keras_zip(package, path, runs_code=runs_code)
        from tf_keras.src.saving import serialization_lib

        # Keras 2's h5 and SavedModel loaders read Lambda code only outside safe mode.
        with serialization_lib.SafeModeScope(not runs_code):
            return package.models.load_model(str(path), compile=False,
                                             custom_objects=application_objects())


#: What a tf_keras .keras zip holds when the model has no assets (vocabularies and the like).
_PLAIN_ZIP = {"metadata.json", "config.json", "model.weights.h5"}


def _load_keras_zip(package: Any, path: Path, *, runs_code: bool) -> Any:
    """A tf_keras .keras file: the model from its config, then its weights from the weights file
    copied out of the zip — exactly what tf_keras' own loader does, except that its loader reads
    the weights through the zip, where each backward seek re-reads the member from its start
    (ResNet50: 12–14 s against 2 s from a plain file). Files with assets take tf_keras' own path."""
    import json
    import shutil
    import tempfile
    import zipfile

    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if names != _PLAIN_ZIP:
            return package.models.load_model(str(path), compile=False, safe_mode=not runs_code,
                                             custom_objects=application_objects())
        config = json.loads(zf.read("config.json"))
        folder = Path(tempfile.mkdtemp(prefix="gradcam-keras2-"))  # private: mode 0700
        try:
            weights = folder / "model.weights.h5"
            with zf.open("model.weights.h5") as source, open(weights, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            from tf_keras.src.saving import serialization_lib

            if isinstance(config, dict):
                config["compile_config"] = None  # what compile=False does
            with serialization_lib.ObjectSharingScope():
                model = serialization_lib.deserialize_keras_object(
                    config, custom_objects=application_objects(), safe_mode=not runs_code)
            model.load_weights(str(weights))
            return model
        finally:
            shutil.rmtree(folder, ignore_errors=True)


class _quiet_tensorflow_logs:
    """Drop tf_keras' loading chatter from the 'tensorflow' logger (it says 'compile the model')."""

    def __enter__(self):
        self._logger = logging.getLogger("tensorflow")
        self._filter = _Filter()
        self._logger.addFilter(self._filter)
        return self

    def __exit__(self, *exc):
        self._logger.removeFilter(self._filter)
        return False


class _Filter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _QUIET.search(record.getMessage())
