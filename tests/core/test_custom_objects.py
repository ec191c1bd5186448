"""Your own layers (issue 11): a Python file that registers Keras classes, run only when trusted."""

from __future__ import annotations

import runpy
import textwrap

import keras
import numpy as np
import pytest

from gradcam_desktop.cli import main
from gradcam_desktop.core import allowlist
from gradcam_desktop.core.custom_objects import load_custom_objects, load_for_model
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.models import load_model
from hostile import rewrite_keras
from model_factory import random_image

LAYERS = textwrap.dedent('''
    import keras

    @keras.saving.register_keras_serializable(package="GradcamTestLayers")
    class ChannelScale(keras.layers.Layer):
        """A learned scale per channel."""

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

        def call(self, x):
            return x * self.scale
''')


def _model(layers_file, with_lambda=False):
    scale_cls = runpy.run_path(str(layers_file))["ChannelScale"]  # as the user's training script did
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 1.0)(inputs) if with_lambda else inputs
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = scale_cls(name="scaled")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    model.get_layer("scaled").scale.assign(np.array([0.5, 2.0, -1.0, 3.0], np.float32))
    return model


def test_registered_classes_load_only_after_the_file_is_trusted(tmp_path, capsys):
    layers_file = tmp_path / "my_layers.py"
    layers_file.write_text(LAYERS, encoding="utf-8")
    model = _model(layers_file)
    model.save(tmp_path / "custom.keras")
    _model(layers_file, with_lambda=True).save(tmp_path / "lambda.keras")
    with pytest.raises(UnsafeModelError, match="custom Python code"):
        load_model(tmp_path / "custom.keras")
    assert main(["layers", "-m", str(tmp_path / "custom.keras")]) != 0
    assert "custom Python code" in capsys.readouterr().err

    assert main(["layers", "-m", str(tmp_path / "custom.keras"), "--custom-objects", str(layers_file)]) == 0
    out, err = capsys.readouterr()
    assert "registered GradcamTestLayers>ChannelScale" in err and "scaled" in out
    assert load_custom_objects(layers_file) == ["GradcamTestLayers>ChannelScale"]
    loaded = load_model(tmp_path / "custom.keras")
    scaled = loaded.model.get_layer("scaled")
    assert type(scaled).__module__.startswith("gradcam_custom_")  # the trusted file's class
    np.testing.assert_array_equal(np.asarray(scaled.scale), [0.5, 2.0, -1.0, 3.0])
    assert GradCam(loaded).explain(random_image(16, 16), "scaled").raw.shape == (16, 16)
    # The rest of the file is still scanned.
    with pytest.raises(UnsafeModelError, match="Lambda"):
        load_model(tmp_path / "lambda.keras")


@pytest.mark.parametrize("source,message", [
    ("x = 1\n", "defines no registered Keras classes"),
    ("raise RuntimeError('broken on purpose')\n", "broken on purpose"),
])
def test_a_file_that_fails_or_registers_nothing_says_so_in_one_line(tmp_path, source, message):
    path = tmp_path / "layers.py"
    path.write_text(source, encoding="utf-8")
    with pytest.raises(ModelLoadError, match=message) as raised:
        load_custom_objects(path)
    assert "\n" not in str(raised.value)
    with pytest.raises(ModelLoadError, match="expected an existing .py file"):
        load_custom_objects(tmp_path / "missing.py")


KERAS2_LAYERS = textwrap.dedent('''
    import tf_keras

    @tf_keras.saving.register_keras_serializable(package="GradcamTestLayers2")
    class ChannelScale2(tf_keras.layers.Layer):
        """A learned scale per channel (Keras 2)."""

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones", name="scale")

        def call(self, x):
            return x * self.scale
''')


@pytest.mark.parametrize("suffix", [".h5", ".keras", ""])
def test_keras2_registered_classes_load_only_after_the_file_is_trusted(tmp_path, suffix):
    import tf_keras

    layers_file = tmp_path / "my_layers2.py"
    layers_file.write_text(KERAS2_LAYERS, encoding="utf-8")
    scale_cls = runpy.run_path(str(layers_file))["ChannelScale2"]
    inputs = tf_keras.Input((16, 16, 3))
    x = tf_keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = scale_cls(name="scaled")(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    model.get_layer("scaled").scale.assign(np.array([0.5, 2.0, -1.0, 3.0], np.float32))
    path = tmp_path / f"custom2{suffix or '_savedmodel'}"
    model.save(path)
    with pytest.raises(UnsafeModelError, match="custom Python code"):
        load_model(path)
    assert load_custom_objects(layers_file) == ["GradcamTestLayers2>ChannelScale2"]
    loaded = load_model(path)
    scale = loaded.model.get_layer("scaled").get_weights()[0]
    np.testing.assert_array_equal(scale, [0.5, 2.0, -1.0, 3.0])  # the file's weights, in the file's class
    assert type(loaded.model.get_layer("scaled")).__name__ == "ChannelScale2"


# ---------------------------------------------------------------- issue 18: run late, trust only the file's own

def _layers_source(package: str, marker: bool = False) -> str:
    """LAYERS under another package name; with ``marker`` it leaves FILE.ran behind when it runs."""
    source = LAYERS.replace('package="GradcamTestLayers"', f'package="{package}"')
    if marker:
        source = source.replace("import keras\n", "import keras\nimport pathlib\n\n"
                                "pathlib.Path(__file__).with_suffix('.ran').write_text('ran')\n", 1)
    return source


def _predictions(config: dict) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["name"] == "predictions")["config"]


HELPER = textwrap.dedent('''
    """A module the custom-objects file imports; what it registers is not the file's."""
    import pathlib

    import keras

    MARKER = pathlib.Path({marker!r})


    @keras.saving.register_keras_serializable(package="GradcamHelper")
    def loud(*args, **kwargs):
        MARKER.touch()
        return keras.ops.zeros(args[0]) if isinstance(args[0], (tuple, list)) else args[0]
''')


def test_what_the_files_imports_register_is_not_trusted(tmp_path, capsys):
    marker = tmp_path / "helper_called"
    (tmp_path / "gradcam_test_helper.py").write_text(HELPER.format(marker=str(marker)), encoding="utf-8")
    layers_file = tmp_path / "layers_with_helper.py"
    layers_file.write_text("import pathlib\nimport sys\n\nsys.path.insert(0, str(pathlib.Path(__file__).parent))\n"
                           "import gradcam_test_helper  # noqa: E402,F401\n" + _layers_source("GradcamHelperUser"),
                           encoding="utf-8")
    _model(layers_file).save(tmp_path / "plain.keras")
    loud = {"module": "gradcam_test_helper", "class_name": "function", "config": "GradcamHelper>loud",
            "registered_name": "function"}
    path = rewrite_keras(tmp_path / "plain.keras", tmp_path / "helper.keras",
                    lambda config: _predictions(config).update(kernel_initializer=loud))
    keras.saving.load_model(path)  # the helper registered 'loud' (runpy above): Keras alone calls it
    assert marker.exists()
    marker.unlink()

    with pytest.raises(UnsafeModelError) as raised:
        load_for_model(layers_file, path)
    assert str(raised.value) == (
        "Refused helper.keras: layer 'predictions' needs registered function 'GradcamHelper>loud', which "
        "layers_with_helper.py does not define; only the classes and functions defined in layers_with_helper.py "
        "itself are trusted, not what its imports register.")
    assert main(["layers", "-m", str(path), "--custom-objects", str(layers_file)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "needs registered function 'GradcamHelper>loud'" in lines[0]
    with pytest.raises(UnsafeModelError, match="GradcamHelper>loud"):
        load_model(path)
    named = rewrite_keras(tmp_path / "plain.keras", tmp_path / "named.keras",  # by name: Keras looks it up too
                     lambda config: _predictions(config).update(kernel_initializer="GradcamHelper>loud"))
    with pytest.raises(UnsafeModelError, match="needs registered function 'GradcamHelper>loud', which "
                                               "layers_with_helper.py does not define"):
        load_for_model(layers_file, named)
    assert not marker.exists()
    # The file's own class is trusted; the helper's function, registered all the same, is not.
    assert load_custom_objects(layers_file) == ["GradcamHelperUser>ChannelScale"]
    assert keras.saving.get_registered_object("GradcamHelper>loud") is not None
    assert allowlist.judge(loud).kind == "custom"
    assert load_model(tmp_path / "plain.keras").model.get_layer("scaled") is not None


def test_a_file_whose_classes_all_come_from_imports_says_so(tmp_path):
    (tmp_path / "gradcam_test_helper_only.py").write_text(
        HELPER.format(marker=str(tmp_path / "unused")).replace("GradcamHelper", "GradcamHelperOnly"), encoding="utf-8")
    path = tmp_path / "reexport.py"
    path.write_text("import pathlib\nimport sys\n\nsys.path.insert(0, str(pathlib.Path(__file__).parent))\n"
                    "from gradcam_test_helper_only import loud  # noqa: E402,F401\n", encoding="utf-8")
    with pytest.raises(ModelLoadError) as raised:
        load_custom_objects(path)
    assert str(raised.value).startswith("reexport.py defines no registered Keras classes or functions (its imports "
                                        "registered GradcamHelperOnly>loud, which are not trusted): define them in "
                                        "the file")


@pytest.fixture
def marked(tmp_path):
    """A custom-objects file that leaves FILE.ran when it runs, and models that use its class."""
    layers_file = tmp_path / "marked_layers.py"
    layers_file.write_text(_layers_source("GradcamMarkedLayers", marker=True), encoding="utf-8")
    _model(layers_file).save(tmp_path / "custom.keras")
    _model(layers_file, with_lambda=True).save(tmp_path / "custom_lambda.keras")
    layers_file.with_suffix(".ran").unlink()  # building the models ran it
    return layers_file, layers_file.with_suffix(".ran")


def test_the_file_does_not_run_for_a_model_that_does_not_need_it(tmp_path, marked, capsys):
    layers_file, ran = marked
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3, name="conv")(inputs))
    plain = tmp_path / "plain.keras"
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(plain)
    for model, who in (("demo", "the demo model"), (str(plain), "plain.keras")):
        assert main(["layers", "-m", model, "--custom-objects", str(layers_file)]) == 0
        assert f"Note: did not run marked_layers.py: {who} needs no custom classes." in capsys.readouterr().err
    # A zoo model is built from Keras' own layers (and its weights are not downloaded to find out).
    assert load_for_model(layers_file, "zoo:MobileNetV2").note == \
        "did not run marked_layers.py: zoo:MobileNetV2 needs no custom classes."
    assert not ran.exists()


def test_the_file_does_not_run_for_a_model_that_fails_its_other_checks(tmp_path, marked, capsys):
    layers_file, ran = marked
    vocabulary = rewrite_keras(tmp_path / "custom_lambda.keras", tmp_path / "custom_vocabulary.keras",
                          lambda config: config["config"]["layers"].append({
                              "module": "keras.layers", "class_name": "StringLookup", "registered_name": None,
                              "config": {"name": "lookup", "vocabulary": "/etc/hostname"}}))
    for args, refusal in (([str(tmp_path / "custom_lambda.keras")], "is a Lambda layer"),
                          ([str(vocabulary), "--trust-model"], "would read the file '/etc/hostname'")):
        assert main(["layers", "-m", *args, "--custom-objects", str(layers_file)]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and refusal in lines[0], lines
    assert not ran.exists()
    # ...and does run, after the checks, for the model that needs it.
    assert load_for_model(layers_file, tmp_path / "custom.keras").registered == ["GradcamMarkedLayers>ChannelScale"]
    assert ran.exists()


def test_a_file_that_calls_sys_exit_is_one_line_and_exit_code_1(tmp_path):
    import subprocess
    import sys

    source = _layers_source("GradcamExitLayers")
    builder = tmp_path / "exit_layers_builder.py"
    builder.write_text(source, encoding="utf-8")
    _model(builder).save(tmp_path / "custom.keras")
    exiting = tmp_path / "exit_layers.py"
    exiting.write_text(source + "\nimport sys\n\nsys.exit(7)\n", encoding="utf-8")
    child = subprocess.run([sys.executable, "-m", "gradcam_desktop.cli", "layers", "-m", str(tmp_path / "custom.keras"),
                            "--custom-objects", str(exiting)], capture_output=True, text=True, timeout=300)
    lines = child.stderr.strip().splitlines()
    assert child.returncode == 1, child.stderr[-2000:]
    assert lines == ["Error: Cannot load custom layers from exit_layers.py: it called sys.exit(7) while being "
                     "loaded; a file of custom layers must only define them: remove that call"], lines


def test_a_failing_file_names_the_error_and_the_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import keras\n\nsettings = {}\nscale = settings['scale']\n", encoding="utf-8")
    with pytest.raises(ModelLoadError) as raised:
        load_custom_objects(path)
    assert str(raised.value) == ("Cannot load custom layers from broken.py: KeyError: 'scale' (line 4); fix the file "
                                 "and try again")
