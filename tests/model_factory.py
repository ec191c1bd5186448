"""Small real Keras models for tests, built and saved in the test's own folder."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from gradcam_desktop.core.images import LoadedImage
from gradcam_desktop.core.models import load_model


def conv_backbone(input_shape=(32, 32, 3), name="backbone", functional=True):
    """Two conv blocks ending in a layer named last_conv at 1/4 resolution."""
    layers = [
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool1"),
        keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.MaxPooling2D(2, name="pool2"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv"),
    ]
    if functional:
        inputs = keras.Input(input_shape)
        x = inputs
        for layer in layers:
            x = layer(x)
        return keras.Model(inputs, x, name=name)
    return keras.Sequential([keras.Input(input_shape), *layers], name=name)


def gap_dense_model(input_shape=(32, 32, 3), classes=4, activation="softmax", seed=0):
    """Input → convs → last_conv → GAP → Dense(activation): the textbook CAM head."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape)
    x = conv_backbone(input_shape, functional=True)(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation=activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name="gap_dense")


def flat_gap_dense_model(input_shape=(32, 32, 3), classes=4, activation="softmax", seed=0):
    """Like gap_dense_model but with every layer at the top level."""
    keras.utils.set_random_seed(seed)
    backbone = conv_backbone(input_shape, functional=False)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            *backbone.layers,
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(classes, activation=activation, name="predictions"),
        ],
        name="flat",
    )


def save_and_load(model, folder: Path, name="model.keras", **kwargs):
    """Save ``model`` like a user would and open it through the app's loader."""
    path = Path(folder) / name
    model.save(path)
    return load_model(path, **kwargs)


def random_image(height=32, width=32, seed=1, channels=3) -> LoadedImage:
    """A noise image of exactly the model's size (so resizing does not enter the check)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if channels == 1:
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    return LoadedImage(rgb=rgb, name="noise.png", path=None, notices=[])


def activations(model_or_layer_model, x) -> np.ndarray:
    """Run a (sub)model on x eagerly and return a NumPy array."""
    return np.asarray(model_or_layer_model(x))


def _walk(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer)


def calibrate(model, x):
    """BatchNorm moving statistics := those of batch ``x`` (momentum 0, one training-mode pass).

    Keras Applications built with weights=None give near-zero activations at the last conv and
    near-uniform probabilities, which would make any map comparison pass trivially.
    """
    norms = [layer for layer in _walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    return model


def float64_twin(model):
    """The same network with every layer computing in float64 and the same weights.

    The Grad-CAM gradient is discontinuous wherever rounding moves a pre-activation across a
    ReLU kink; in float64 that needs a value within ~1e-13 of the kink (see tests/reference.py).
    """

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Layer):  # not keras.ops nodes: they follow their inputs
            config["dtype"] = "float64"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    twin.set_weights(model.get_weights())
    return twin


def float64_engine(engine):
    """A GradCam for the float64 twin of ``engine``'s model, with the same loading options."""
    from dataclasses import replace

    from gradcam_desktop.core.gradcam import GradCam

    return GradCam(replace(engine.loaded, model=float64_twin(engine.model), head=None))
