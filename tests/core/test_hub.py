"""KerasHub models (the optional [hub] extra, issue 11): tiny random models built here, saved as
.keras and opened through the app's loader (scan, footprint, Keras), maps against eager references.

The ResNet maps are taken at the backbone's last output, which feeds global pooling → Dense, where
the gradient is exact in float32 (tests/reference.py). The ViT is built in float64 (KerasHub takes
a dtype), so the engine and the eager reference differ by rounding only.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cam_reference as ref
from cam_reference import assert_close
from gradcam_desktop.core import allowlist, preprocess, scan
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.layers import TokenGrid, default_layer
from gradcam_desktop.core.models import load_model
from model_factory import calibrate, random_image
from reference import OPS_PER_LAYER, U64, assert_map_close, capture, discrepancy, exact_gradient, gamma, reference_map

SIDE = 32
HUB_NODE = {"module": "keras_hub.src.models.resnet.resnet_backbone", "class_name": "ResNetBackbone",
            "config": {"name": "res_net_backbone"}, "registered_name": "keras_hub>ResNetBackbone"}


def hub():
    return pytest.importorskip("keras_hub")


def resnet_backbone(seed: int):
    keras.utils.set_random_seed(seed)
    return hub().models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(SIDE, SIDE, 3), name="resnet")


def noise_batch(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (4, SIDE, SIDE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    """A user's transfer model: Rescaling → KerasHub ResNet backbone → GAP → Dense(softmax)."""
    backbone = resnet_backbone(1)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(x))
    calibrate(model, noise_batch(2) * 255)
    path = tmp_path_factory.mktemp("transfer") / "transfer.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A KerasHub ResNetImageClassifier with its own preprocessor (ImageNet mean/std converter)."""
    keras_hub = hub()
    backbone = resnet_backbone(3)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    converter = keras_hub.layers.ResNetImageConverter(image_size=(SIDE, SIDE), scale=list(1 / (255 * std)),
                                                      offset=list(-mean / std))
    model = keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter))
    calibrate(model, (noise_batch(4) - mean) / std)
    path = tmp_path_factory.mktemp("classifier") / "classifier.keras"
    model.save(path)
    return path


def _gap_dense_reference(model, backbone, x, cls):
    """Eager: the backbone's output A (called as one Keras layer), logits = mean(A)·W + b; g by the tape."""
    dense = model.get_layer("predictions")

    def features_and_logits(batch):
        features = backbone(batch, training=False)
        return features, keras.ops.matmul(keras.ops.mean(features, axis=(1, 2)), dense.kernel) + dense.bias
    A, g, logits = capture(features_and_logits, x, np.eye(dense.units)[cls])
    return reference_map(A, g, discrepancy(model), exact_gradient(), logits)


def test_a_kerashub_backbone_inside_a_transfer_model_opens_and_maps(transfer):
    loaded = load_model(transfer)
    engine = GradCam(loaded)
    layer = default_layer(loaded.model)
    assert layer == "resnet/stack1_block0_out"
    assert loaded.preprocess == "raw"  # the model's own Rescaling
    image = random_image(SIDE, SIDE, seed=5)
    backbone = loaded.model.get_layer("resnet")
    scaled = loaded.model.get_layer("scale")(image.rgb.astype(np.float32)[None])
    for cls in range(4):
        result = engine.explain(image, layer, cls)
        assert_map_close(result.raw, _gap_dense_reference(loaded.model, backbone, np.asarray(scaled), cls),
                         allow_flat=cls != 0)


def test_an_image_classifier_uses_its_own_image_converter(classifier):
    loaded = load_model(classifier)
    converter = loaded.model.preprocessor.image_converter
    assert loaded.preprocess == preprocess.affine_mode(converter.scale, converter.offset)
    engine = GradCam(loaded)
    image = random_image(SIDE, SIDE, seed=6)
    x = image.rgb.astype(np.float32)[None] * np.float32(converter.scale) + np.float32(converter.offset)
    np.testing.assert_array_equal(engine.model_input(image), x)
    layer = default_layer(loaded.model)
    assert layer == "resnet/stack1_block0_out"
    backbone = loaded.model.get_layer("resnet")
    for cls in range(3):
        result = engine.explain(image, layer, cls)
        assert_map_close(result.raw, _gap_dense_reference(loaded.model, backbone, x, cls), allow_flat=cls != 0)


def test_a_kerashub_vit_maps_on_its_patch_grid(tmp_path):
    keras_hub = hub()
    keras.utils.set_random_seed(7)
    backbone = keras_hub.models.ViTBackbone(image_shape=(16, 24, 3), patch_size=4, num_layers=2, num_heads=2,
                                            hidden_dim=8, mlp_dim=16, dtype="float64", name="vit")
    converter = keras_hub.layers.ViTImageConverter(image_size=(16, 24), scale=1 / 127.5, offset=-1.0)
    model = keras_hub.models.ViTImageClassifier(
        backbone=backbone, num_classes=3, head_dtype="float64",
        preprocessor=keras_hub.models.ViTImageClassifierPreprocessor(image_converter=converter))
    model.save(tmp_path / "vit.keras")
    loaded = load_model(tmp_path / "vit.keras")
    engine = GradCam(loaded)
    # pooling="token": after the encoder only the class token matters, so the map is taken at the
    # input of the (one-layer) encoder: the patch embeddings.
    layer = default_layer(loaded.model)
    assert layer == "vit/vit_patching_and_embedding"
    assert engine.capture(layer).grid == TokenGrid(1, 4, 6)
    image = random_image(16, 24, seed=8)
    x = image.rgb.astype(np.float64)[None] / 127.5 - 1.0
    inner = loaded.model.get_layer("vit")
    dense = loaded.model.get_layer("predictions")

    def features_and_logits(batch):
        tokens = inner.get_layer("vit_patching_and_embedding")(batch)
        encoded = inner.get_layer("vit_encoder")(tokens, training=False)
        return tokens, keras.ops.matmul(encoded[:, 0], dense.kernel) + dense.bias

    # Float64 pass error: every sum here has at most 4·4·3 = 48 terms; each of the ~30 sublayers
    # (embedding, 2 × (2 norms, q, k, v, scores, softmax, values, output, 2 MLP)) rounds once per step.
    steps = sum(1 for _ in inner.get_layer("vit_encoder")._flatten_layers()) + 8  # noqa: SLF001 - count only
    rho = 2 * steps * gamma(48 + OPS_PER_LAYER, U64)
    informative = 0
    for cls in range(3):
        A, g, _ = capture(features_and_logits, x, np.eye(3)[cls])
        A, g = A[1:].reshape(4, 6, 8), g[1:].reshape(4, 6, 8)  # by hand: class token out, rows of 6
        expected = ref.gradient_map("gradcam", *ref.inputs(A, g, rho, rho))
        assert_close(engine.explain(image, layer, cls).raw, expected, what=f"ViT class {cls}", vacuous_ok=True)
        informative += bool((expected.v > 4 * expected.e).any())
    assert informative >= 2
    assert not engine.explain(image, "vit/vit_encoder", 0).raw.any()  # class token only


def test_a_kerashub_file_with_a_lambda_is_still_refused(tmp_path):
    backbone = resnet_backbone(9)
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0, name="scale")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    keras.Model(inputs, keras.layers.Dense(2)(x)).save(tmp_path / "lambda.keras")
    with pytest.raises(UnsafeModelError, match="Lambda"):
        load_model(tmp_path / "lambda.keras")


def test_only_classes_that_keras_hub_defines_pass(monkeypatch):
    hub()
    assert allowlist.judge(HUB_NODE).kind == "ok"

    @keras.saving.register_keras_serializable(package="keras_hub", name="Impostor")
    class Impostor(keras.layers.Layer):
        pass

    node = {"module": "my_module", "class_name": "Impostor", "config": {}, "registered_name": "keras_hub>Impostor"}
    assert allowlist.judge(node).kind == "custom"
    with pytest.raises(UnsafeModelError, match="custom Python code"):
        scan.scan_config(node)
    unknown = {**HUB_NODE, "class_name": "NoSuchThing", "registered_name": "keras_hub>NoSuchThing",
               "module": "keras_hub.src.models.resnet.resnet_backbone"}
    assert allowlist.judge(unknown).kind == "unknown"


def test_without_the_extra_a_kerashub_file_names_it(monkeypatch):
    monkeypatch.setattr(allowlist, "hub_installed", lambda: False)
    with pytest.raises(ModelLoadError) as raised:
        scan.scan_config({"class_name": "Functional", "config": {"layers": [HUB_NODE]}})
    message = str(raised.value)
    assert "\n" not in message and "KerasHub" in message and 'pip install "gradcam-desktop[hub]"' in message


def test_a_preprocessor_may_name_its_preset_file_but_nothing_else():
    node = {"config_file": "preprocessor.json"}
    scan.scan_config(node)  # a fixed name KerasHub never reads when loading
    with pytest.raises(UnsafeModelError, match="read the file"):
        scan.scan_config({"config_file": "/etc/passwd"})
