"""core.safety: hostile model files are refused before Keras runs anything from them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from gradcam_desktop.core import safety
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError
from gradcam_desktop.core.safety import check_model_file, scan_config
from keras.src.saving import serialization_lib


def _marker_lambda(marker: Path):
    # Runs (and leaves a file behind) whenever Keras calls the layer, e.g. on load.
    m = str(marker)  # kept in the closure, which Keras stores in the file too
    return lambda t: (open(m, "w").close(), t)[1]


def _tiny_model() -> keras.Model:
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="head")(x))


def _lambda_model(marker: Path) -> keras.Model:
    inp = keras.Input((4,))
    x = keras.layers.Lambda(_marker_lambda(marker), name="lambda_1")(inp)
    return keras.Model(inp, keras.layers.Dense(2)(x))


def _nested_lambda_model(marker: Path) -> keras.Model:
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4),
                              keras.layers.Lambda(_marker_lambda(marker), name="deep_lambda")],
                             name="inner")
    middle = keras.Sequential([keras.Input((4,)), inner], name="middle")
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(2)(middle(inp)))


def _write_keras_zip(path: Path, config: dict, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return path


def _config_of(model: keras.Model) -> dict:
    return json.loads(json.dumps(serialization_lib.serialize_keras_object(model)))


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------ Lambda files never run

@pytest.mark.parametrize("builder, suffix, layer", [
    (_lambda_model, ".keras", "lambda_1"),
    (_nested_lambda_model, ".keras", "deep_lambda"),
    (_lambda_model, ".h5", "lambda_1"),
    (_nested_lambda_model, ".h5", "deep_lambda"),
])
def test_lambda_model_refused_without_running_it(tmp_path, builder, suffix, layer):
    marker = tmp_path / "marker"
    path = tmp_path / f"model{suffix}"
    builder(marker).save(path)
    marker.unlink(missing_ok=True)  # building the model called the lambda once

    with pytest.raises(UnsafeModelError) as err:
        check_model_file(path)
    text = _one_line(err)
    assert text.startswith(f"Refused model{suffix}: layer '{layer}' is a Lambda layer")
    assert "--trust-model" in text
    assert not marker.exists()

    check_model_file(path, trust=True)  # trusted: the scan lets it through
    assert not marker.exists()  # ...and still never executed anything


def test_lambda_file_is_really_armed(tmp_path):
    # Proves the fixture above is a real threat: unsafe loading runs the stored code.
    marker = tmp_path / "marker"
    path = tmp_path / "armed.keras"
    _lambda_model(marker).save(path)
    marker.unlink()
    model = keras.saving.load_model(path, safe_mode=False, compile=False)
    model(np.zeros((1, 4), "float32"))
    assert marker.exists()


def test_legacy_tf_keras_lambda_config():
    legacy = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": "Lambda", "config": {
            "name": "old_lambda", "function": ["4wEAAAAAAAAA", None, None],
            "function_type": "lambda", "module": "__main__", "output_shape": None,
            "output_shape_type": "raw", "output_shape_module": None, "arguments": {}}}]}}
    with pytest.raises(UnsafeModelError, match="layer 'old_lambda' is a Lambda layer"):
        scan_config(legacy)
    scan_config(legacy, trust=True)
    # A bare lambda payload (no Lambda class) is still code in the file.
    payload = {"class_name": "Activation", "config": {"name": "act", "function": ["x"],
                                                      "function_type": "lambda"}}
    with pytest.raises(UnsafeModelError, match="lambda function"):
        scan_config(payload)


def test_lambda_function_outside_lambda_layer():
    config = _config_of(_tiny_model())
    config["config"]["layers"][2]["config"]["activation"] = {
        "class_name": "__lambda__", "config": {"code": "AAAA", "defaults": None,
                                               "closure": None}}
    with pytest.raises(UnsafeModelError, match="layer 'conv' holds a Python lambda"):
        scan_config(config)
    scan_config(config, trust=True)


# ------------------------------------------------------------ hand-crafted hostile configs

def _dense_with_activation(activation) -> dict:
    config = _config_of(_tiny_model())
    head = next(layer for layer in config["config"]["layers"] if layer["name"] == "head")
    head["config"]["activation"] = activation
    return config


@pytest.mark.parametrize("activation, expected", [
    ({"module": "builtins", "class_name": "function", "config": "eval",
      "registered_name": "function"}, "built-in 'eval'"),
    ({"module": "builtins", "class_name": "function", "config": "my_act",
      "registered_name": "function"}, "Python function 'my_act'"),
    ({"module": "builtins", "class_name": "function", "config": "mw>scaled_relu",
      "registered_name": "function"}, "mw>scaled_relu"),
    ({"module": "os", "class_name": "function", "config": "system",
      "registered_name": None}, "from module 'os'"),
    ({"module": "keras.utils", "class_name": "function", "config": "get_file",
      "registered_name": None}, "not a model building block"),
    ({"module": "keras.models", "class_name": "function", "config": "load_model",
      "registered_name": None}, "not a model building block"),
    # Named by class path rather than as a function (the old denylist let these through).
    ({"module": "keras.utils", "class_name": "plot_model", "config": {},
      "registered_name": None}, "'keras.utils.plot_model', which is not a model building block"),
    ({"module": "keras.datasets.cifar10", "class_name": "load_data", "config": {},
      "registered_name": None}, "'keras.datasets.cifar10.load_data', which is not"),
    ({"module": "keras.legacy.saving", "class_name": "deserialize_keras_object", "config": {},
      "registered_name": None}, "'keras.legacy.saving.deserialize_keras_object', which is not"),
    ({"module": "keras.layers", "class_name": "function", "config": "deserialize",
      "registered_name": None}, "'keras.layers.deserialize', which is not"),
])
def test_hostile_function_refused_even_when_trusted(tmp_path, activation, expected):
    path = _write_keras_zip(tmp_path / "evil.keras", _dense_with_activation(activation))
    for trust in (False, True):
        with pytest.raises(UnsafeModelError) as err:
            check_model_file(path, trust=trust)
        assert expected in _one_line(err)
        assert "layer 'head'" in str(err.value)


def test_enable_unsafe_deserialization_anywhere_refused(tmp_path):
    sneaky = _dense_with_activation({"module": "keras.config", "class_name": "function",
                                     "config": "enable_unsafe_deserialization",
                                     "registered_name": None})
    path = _write_keras_zip(tmp_path / "evil.keras", sneaky)
    with pytest.raises(UnsafeModelError, match="safe mode"):
        check_model_file(path, trust=True)
    # Even hidden in a harmless-looking string or key, or JSON-escaped.
    with pytest.raises(UnsafeModelError):
        scan_config({"a": [{"b": "x keras.config.enable_unsafe_deserialization"}]})
    with pytest.raises(UnsafeModelError):
        scan_config({"enable_unsafe_deserialization": 1})
    escaped = json.dumps(_config_of(_tiny_model()))[:-1] + \
        ', "note": "enable\\u005funsafe_deserialization"}'
    path.write_bytes(b"")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", escaped)
    with pytest.raises(UnsafeModelError):
        check_model_file(path)


@pytest.mark.parametrize("layer", [
    {"module": None, "class_name": "MyLayer", "config": {"name": "mine"},
     "registered_name": "MyPkg>MyLayer"},
    {"module": "my_package.layers", "class_name": "MyLayer", "config": {"name": "mine"},
     "registered_name": None},
    {"module": "keras_evil", "class_name": "Dense", "config": {"name": "mine"},
     "registered_name": None},
    {"class_name": "Custom>MyLayer", "config": {"name": "mine"}},  # legacy h5 style
])
def test_custom_code_refused(layer):
    config = _config_of(_tiny_model())
    config["config"]["layers"].append(layer)
    for trust in (False, True):
        with pytest.raises(UnsafeModelError, match="layer 'mine' needs custom Python code"):
            scan_config(config, trust=trust)


@pytest.mark.parametrize("class_name", ["TFSMLayer", "TorchModuleWrapper", "JaxLayer",
                                        "FlaxLayer"])
def test_foreign_wrappers_refused(class_name):
    layer = {"module": "keras.layers", "class_name": class_name,
             "config": {"name": "wrapped"}, "registered_name": None}
    config = _config_of(_tiny_model())
    config["config"]["layers"].insert(1, layer)
    with pytest.raises(UnsafeModelError, match=f"layer 'wrapped' is a {class_name}"):
        scan_config(config, trust=True)


def test_unknown_special_object_refused():
    with pytest.raises(UnsafeModelError, match="__reduce__"):
        scan_config({"class_name": "__reduce__", "config": {}})


def test_deeply_nested_config_does_not_crash():
    config: dict = {"class_name": "Lambda", "config": {"name": "bottom"}}
    for i in range(5000):  # deeper than Python's recursion limit
        config = {"class_name": "Sequential", "config": {"name": f"s{i}", "layers": [config]}}
    with pytest.raises(UnsafeModelError, match="'bottom'"):
        scan_config(config)


def test_custom_loss_in_compile_config_tolerated_but_lambda_not():
    config = _config_of(_tiny_model())
    custom = {"module": "builtins", "class_name": "function", "config": "mw>focal_loss",
              "registered_name": "function"}
    config["compile_config"] = {"loss": custom, "optimizer": "adam", "metrics": None}
    scan_config(config)  # never deserialized: loaders use compile=False
    config["compile_config"]["loss"] = {"class_name": "__lambda__", "config": {"code": "x"}}
    with pytest.raises(UnsafeModelError):
        scan_config(config)
    config["compile_config"]["loss"] = {"module": "builtins", "class_name": "function",
                                        "config": "exec", "registered_name": "function"}
    with pytest.raises(UnsafeModelError, match="built-in 'exec'"):
        scan_config(config)


# ------------------------------------------------------------ broken / wrong files

def test_corrupt_zip(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip file" * 10)
    with pytest.raises(ModelLoadError, match=r"bad.keras is not a valid \.keras file "
                                             r"\(corrupt or not a zip\)"):
        check_model_file(bad)


def test_truncated_keras_file(tmp_path):
    good = tmp_path / "good.keras"
    _tiny_model().save(good)
    cut = tmp_path / "cut.keras"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="not a valid .keras file"):
        check_model_file(cut)


def test_keras_zip_without_config(tmp_path):
    path = tmp_path / "noconfig.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("model.weights.h5", b"x")
    with pytest.raises(ModelLoadError, match="no config.json"):
        check_model_file(path)


def test_keras_zip_with_bad_json(tmp_path):
    path = tmp_path / "json.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", b"{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        check_model_file(path)


def test_zip_bomb_many_members(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(_config_of(_tiny_model())))
        for i in range(safety.MAX_ZIP_MEMBERS + 1):
            zf.writestr(f"assets/{i}", b"")
    with pytest.raises(UnsafeModelError, match="zip bomb"):
        check_model_file(path)


def test_zip_bomb_unpacked_size(tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "MAX_ZIP_UNPACKED_BYTES", 1024 * 1024)
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", json.dumps(_config_of(_tiny_model())))
        zf.writestr("assets/zeros", bytes(2 * 1024 * 1024))  # compresses to ~2 KB
    assert path.stat().st_size < 100_000
    with pytest.raises(UnsafeModelError, match="unpack to more than"):
        check_model_file(path)


def test_oversized_config(tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "MAX_CONFIG_BYTES", 1000)
    path = _write_keras_zip(tmp_path / "big.keras", _config_of(_tiny_model()))
    with pytest.raises(ModelLoadError, match="config.json larger than"):
        check_model_file(path)


def test_path_traversal_member(tmp_path):
    path = _write_keras_zip(tmp_path / "trav.keras", _config_of(_tiny_model()),
                            {"../../etc/evil": b"x"})
    with pytest.raises(UnsafeModelError, match="suspicious path"):
        check_model_file(path)


def test_text_file_named_h5(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("this is text, not HDF5\n")
    with pytest.raises(ModelLoadError, match="model.h5 is not an HDF5 file"):
        check_model_file(path)


@pytest.mark.parametrize("suffix", [".keras", ".h5", ".hdf5"])
def test_empty_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.touch()
    with pytest.raises(ModelLoadError, match=f"empty{suffix} is empty"):
        check_model_file(path)


def test_weights_only_h5(tmp_path):
    model = _tiny_model()
    new_style = tmp_path / "model.weights.h5"
    model.save_weights(new_style)
    from keras.src.legacy.saving import legacy_h5_format

    old_style = tmp_path / "legacy_weights.h5"
    with h5py.File(old_style, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    for path in (new_style, old_style):
        with pytest.raises(ModelLoadError, match="holds weights only, no model; save the "
                                                 "whole model"):
            check_model_file(path)


def test_h5_model_config_as_bytes_and_str(tmp_path):
    config = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Lambda", "config": {"name": "lam"}}]}})
    for kind, value in (("bytes", np.bytes_(config.encode())), ("str", config)):
        path = tmp_path / f"{kind}.h5"
        with h5py.File(path, "w") as f:
            f.attrs["model_config"] = value
        with pytest.raises(UnsafeModelError, match="layer 'lam'"):
            check_model_file(path)


def test_savedmodel_folder(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    module.f = tf.function(lambda x: x * module.v,
                           input_signature=[tf.TensorSpec([None], tf.float32)])
    folder = tmp_path / "exported"
    tf.saved_model.save(module, str(folder))
    assert (folder / "saved_model.pb").exists()
    for path in (folder, folder / "saved_model.pb"):
        with pytest.raises(ModelLoadError) as err:
            check_model_file(path)
        text = _one_line(err)
        # A tf.Module has no Keras metadata: the line says what the folder is and what would open.
        assert "exported is a TensorFlow SavedModel without Keras metadata" in text
        assert "model.save() folder" in text


@pytest.mark.parametrize("name", ["model.onnx", "model.pt", "model.tflite", "model"])
def test_unknown_extension(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00" * 16)
    with pytest.raises(ModelLoadError, match=r"\.keras .*\.h5"):
        check_model_file(path)


def test_missing_file_and_plain_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        check_model_file(tmp_path / "nope.keras")
    with pytest.raises(ModelLoadError, match="is a folder"):
        check_model_file(tmp_path)


def test_oversized_file(tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "MAX_FILE_BYTES", 10)
    path = tmp_path / "big.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelLoadError, match="larger than"):
        check_model_file(path)


# ------------------------------------------------------------ ordinary models pass

@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_ordinary_saved_models_pass(tmp_path, suffix):
    model = _tiny_model()
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / f"tiny{suffix}"
    model.save(path)
    check_model_file(path)
    check_model_file(str(path))


def test_ordinary_layers_pass():
    inp = keras.Input((16, 16, 3))
    norm = keras.layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[1.0, 1.0, 1.0])
    x = norm(keras.layers.Rescaling(1 / 127.5, offset=-1)(inp))
    x = keras.layers.Conv2D(4, 3, activation=keras.activations.relu,
                            kernel_regularizer=keras.regularizers.L2(1e-4),
                            kernel_constraint=keras.constraints.MaxNorm(3))(x)
    x = keras.layers.Activation("swish")(x)
    x = keras.layers.BatchNormalization()(x)
    sub = keras.Sequential([keras.Input((14, 14, 4)), keras.layers.Conv2D(2, 1)], name="sub")
    x = keras.layers.GlobalMaxPooling2D()(sub(x))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.SGD(), loss=keras.losses.binary_crossentropy,
                  metrics=[keras.metrics.AUC()])
    config = _config_of(model)
    config["compile_config"] = json.loads(json.dumps(
        serialization_lib.serialize_keras_object(model.get_compile_config())))
    scan_config(config)


@pytest.mark.parametrize("name", ["MobileNetV2", "ResNet50", "EfficientNetB0",
                                  "MobileNetV3Small", "ConvNeXtTiny"])
def test_keras_applications_pass(name):
    model = getattr(keras.applications, name)(weights=None)
    scan_config(_config_of(model))
    legacy = {"class_name": "Functional", "config": model.get_config()}
    scan_config(json.loads(json.dumps(legacy, default=str)))


def test_saved_application_file_passes(tmp_path):
    path = tmp_path / "mnv3.keras"
    keras.applications.MobileNetV3Small(weights=None).save(path)
    check_model_file(path)
