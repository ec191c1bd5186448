"""Your own layers (issue 11): a Python file that registers Keras classes, run only when trusted."""

from __future__ import annotations

import runpy
import textwrap

import keras
import numpy as np
import pytest

from gradcam_desktop.cli import main
from gradcam_desktop.core.custom_objects import load_custom_objects
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.models import load_model
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
    ("x = 1\n", "registered no Keras classes"),
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
