"""Hostile Keras 2 (tf.keras / ``tf_keras``) files are refused before Keras 2 or TensorFlow runs
anything from them: Lambda code in each of the three formats, SavedModel graphs that write files,
TFOpLambda layers naming a file function, foreign classes in a Keras 2 .keras file, and SavedModels
without Keras metadata.

Every hostile file here is armed: a marker file appears when its code runs (each armed-ness is
shown once, by running the file outside the app), and the marker never appears while the app
refuses it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from gradcam_desktop.core.backend import is_keras2
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.safety import check_model_file

L = tf_keras.layers
SAVE = {"h5": ("model.h5", {}), "keras": ("model.keras", {}), "savedmodel": ("model", {"save_format": "tf"})}


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert text and "\n" not in text, text
    return text


def _save(model, folder: Path, kind: str) -> Path:
    name, options = SAVE[kind]
    path = folder / name
    model.save(str(path), **options)
    return path


def _conv_head(inputs, x):
    x = L.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return tf_keras.Model(inputs, L.Dense(2, activation="softmax", name="head")(x))


# ------------------------------------------------------------------ Lambda code, three formats

def _marker_lambda(marker: Path):
    # Runs (and leaves a file behind) whenever Keras 2 calls the layer, e.g. while rebuilding the
    # model on load. The path lives in the closure, which Keras 2 stores in the file with the code.
    path = str(marker)
    return lambda t: (open(path, "w").close(), t)[1]


def _lambda_model(marker: Path):
    inputs = L.Input((16, 16, 3))
    return _conv_head(inputs, L.Lambda(_marker_lambda(marker), name="marker_lambda")(inputs))


@pytest.mark.parametrize("kind", list(SAVE))
def test_lambda_model_is_refused_unless_trusted_and_never_runs(tmp_path, kind):
    marker = tmp_path / "marker"
    path = _save(_lambda_model(marker), tmp_path, kind)
    marker.unlink(missing_ok=True)  # building (and tracing for a SavedModel) called the lambda

    for attempt in (check_model_file, load_model):
        with pytest.raises(UnsafeModelError) as error:
            attempt(path)
        text = _one_line(error)
        assert text.startswith(f"Refused {path.name}: layer 'marker_lambda' is a Lambda layer"), text
        assert "--trust-model" in text
        assert error.value.trustable  # trusting the file is the one way to open it
        assert not marker.exists()

    checked = check_model_file(path, trust=True)  # trusted: the scan lets it through...
    assert checked.runs_code and checked.keras == 2
    assert not marker.exists()  # ...without running it

    # Armed: opening it trusted rebuilds the model through Keras 2, which calls the stored lambda.
    loaded = load_model(path, trust=True)
    assert is_keras2(loaded.model)
    loaded.model(np.zeros((1, 16, 16, 3), np.float32))
    assert marker.exists()


# ------------------------------------------------------------------ SavedModel graphs that write files

class FileWriter(L.Layer):
    """Writes a file from inside the graph (tf.io.write_file is a WriteFile operation)."""

    def __init__(self, target: str = "", **kwargs):
        super().__init__(**kwargs)
        self.target = target

    def call(self, inputs):
        tf.io.write_file(self.target, "written by the model")
        return inputs

    def get_config(self):
        return {**super().get_config(), "target": self.target}


class WritingModule(tf.Module):
    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.scale = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        tf.io.write_file(self.target, "written by the module")
        return x * self.scale


def _writer_keras_savedmodel(folder: Path, marker: Path) -> Path:
    inputs = L.Input((16, 16, 3))
    model = _conv_head(inputs, FileWriter(str(marker), name="writer")(inputs))
    path = folder / "writer"
    model.save(str(path), save_format="tf")
    assert (path / "keras_metadata.pb").is_file()
    return path


def _writer_module_savedmodel(folder: Path, marker: Path) -> Path:
    path = folder / "module"
    tf.saved_model.save(WritingModule(str(marker)), str(path))
    return path


@pytest.mark.parametrize("build", [_writer_keras_savedmodel, _writer_module_savedmodel],
                         ids=["keras-layer", "tf-module"])
def test_savedmodel_that_writes_a_file_is_refused_naming_the_operation(tmp_path, build):
    marker = tmp_path / "marker"
    path = build(tmp_path, marker)
    assert not marker.exists()  # saving traces the graph; it does not run it

    for attempt, trust in ((check_model_file, False), (load_model, False), (load_model, True)):
        with pytest.raises(UnsafeModelError) as error:
            attempt(path, trust=trust)
        text = _one_line(error)
        assert text.startswith(f"Refused {path.name}: ")
        assert "'WriteFile'" in text and "in function '" in text, text
        assert not error.value.trustable  # trusting allows Lambda code, never file operations
        assert not marker.exists()
    # The graph file named instead of its folder: the same refusal.
    with pytest.raises(UnsafeModelError, match="'WriteFile'"):
        check_model_file(path / "saved_model.pb")
    assert not marker.exists()

    # Armed: TensorFlow's own loader runs the graph, and the file appears.
    restored = tf.saved_model.load(str(path))
    function = restored.signatures["serving_default"]
    spec = next(iter(function.structured_input_signature[1].values()))
    function(tf.zeros([1, *spec.shape[1:]], spec.dtype))
    assert marker.exists()


def test_savedmodel_without_keras_metadata_is_one_line(tmp_path):
    """Keras refuses it (no layers to see); opened as a black box (issue 16) it is refused for what it
    is — no image input — in one plain line, not as hostile."""
    module = tf.Module()
    module.scale = tf.Variable(3.0)
    module.__call__ = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    path = tmp_path / "serving"
    tf.saved_model.save(module, str(path))
    assert not (path / "keras_metadata.pb").exists()
    with pytest.raises(ModelLoadError) as error:
        check_model_file(path)
    assert type(error.value) is ModelLoadError  # not a refusal: nothing hostile, just no layers
    assert _one_line(error).startswith("serving is a TensorFlow SavedModel without Keras metadata")
    with pytest.raises(ModelLoadError) as error:
        load_model(path)
    assert type(error.value) is ModelLoadError
    text = _one_line(error)
    assert "input 'x' has shape (?, 4)" in text and "needs an image batch" in text, text


# ------------------------------------------------------------------ TFOpLambda naming a file function

def _op_model():
    """A functional model whose graph calls TensorFlow functions: TFOpLambda layers in Keras 2."""
    inputs = L.Input((16, 16, 3))
    x = tf.math.multiply(inputs + 1.0, 0.5)
    return _conv_head(inputs, x)


def _functions(config: dict) -> list:
    return [layer["config"].get("function") for layer in config["config"]["layers"]
            if layer["class_name"] == "TFOpLambda"]


@pytest.mark.parametrize("function", ["io.write_file", "io.read_file", "py_function", "numpy_function",
                                      "print", "compat.v1.py_func"])
def test_tfoplambda_naming_a_file_or_python_function_is_refused(tmp_path, function):
    path = _save(_op_model(), tmp_path, "h5")
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
    assert _functions(config) == ["__operators__.add", "math.multiply"]
    assert is_keras2(load_model(path).model)  # as written, the file opens

    for layer in config["config"]["layers"]:
        if layer["class_name"] == "TFOpLambda" and layer["config"]["function"] == "__operators__.add":
            layer["config"]["function"] = function
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = json.dumps(config)
    with h5py.File(path, "r") as f:  # the rewrite took
        assert function in _functions(json.loads(f.attrs["model_config"]))

    for attempt, trust in ((check_model_file, False), (load_model, False), (load_model, True)):
        with pytest.raises(UnsafeModelError) as error:
            attempt(path, trust=trust)
        text = _one_line(error)
        assert text.startswith("Refused model.h5: ")
        assert f"'tf.{function}'" in text, text
        assert not error.value.trustable


# ------------------------------------------------------------------ foreign classes in a Keras 2 .keras

class CustomScale(L.Layer):
    """A user's own layer: its code is in this test module, not in the file or in tf_keras."""

    def call(self, inputs):
        return inputs * 2.0


def _rewrite_keras_config(path: Path, change) -> None:
    with zipfile.ZipFile(path) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode("utf-8")
    with zipfile.ZipFile(path, "w") as target:
        for name, data in members.items():
            target.writestr(name, data)


def _conv_layer(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["config"].get("name") == "conv")


def _subprocess_class(config: dict) -> None:
    layer = _conv_layer(config)
    layer["module"], layer["class_name"], layer["registered_name"] = "subprocess", "Popen", None


def _os_function_activation(config: dict) -> None:
    _conv_layer(config)["config"]["activation"] = {"module": "os", "class_name": "function", "config": "system",
                                                     "registered_name": "function"}


@pytest.mark.parametrize("variant", ["own-layer", "subprocess-class", "os-function"])
def test_keras2_keras_file_naming_a_foreign_module_is_refused_as_custom_code(tmp_path, variant):
    inputs = L.Input((16, 16, 3))
    if variant == "own-layer":
        model = _conv_head(inputs, CustomScale(name="custom_scale")(inputs))
    else:
        model = _conv_head(inputs, inputs)
    path = _save(model, tmp_path, "keras")
    if variant == "subprocess-class":
        _rewrite_keras_config(path, _subprocess_class)
    elif variant == "os-function":
        _rewrite_keras_config(path, _os_function_activation)
    with zipfile.ZipFile(path) as archive:
        metadata = json.loads(archive.read("metadata.json"))
    assert str(metadata["keras_version"]).startswith("2.")  # written by Keras 2: judged as a Keras 2 file

    expected = {
        "own-layer": f"class 'CustomScale' from module '{CustomScale.__module__}'",
        "subprocess-class": "class 'Popen' from module 'subprocess'",
        # The verdict names the config's class_name ("function"), as the Keras 3 allowlist does.
        "os-function": "from module 'os'",
    }[variant]
    for attempt, trust in ((check_model_file, False), (load_model, False), (load_model, True)):
        with pytest.raises(UnsafeModelError) as error:
            attempt(path, trust=trust)
        text = _one_line(error)
        assert text.startswith("Refused model.keras: layer '"), text
        assert "custom Python code" in text and expected in text, text
        assert not error.value.trustable
