"""Vision Transformers: a token layer is read as its patch grid (issue 11).

The engine's maps at token layers of tiny ViT-like models (tests/vit_factory.py) are compared
with float64 references that take A and g of the tokens from an eager GradientTape and do the
reshape by hand (drop the class token, row-major h × w), on the model's float64 twin (GELU,
softmax and LayerNormalization are smooth, so float64 leaves only rounding).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import cam_reference as ref
from cam_reference import assert_close
from gradcam_desktop.core.errors import LayerError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.layers import TokenGrid, check_eligible, default_layer, iter_layers, layer_tree, token_grid
from model_factory import float64_engine, random_image, save_and_load
from reference import OPS_PER_LAYER, U64, capture, gamma
from vit_factory import DIM, GRID, PATCH, SIZE, tiny_vit

TOKENS = GRID[0] * GRID[1]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """(float32 engine, float64 twin) for the ViT with and without a class token."""
    out = {}
    for class_token in (True, False):
        folder = tmp_path_factory.mktemp(f"vit{int(class_token)}")
        engine = GradCam(save_and_load(tiny_vit(class_token, seed=5 + class_token), folder, preprocess="unit"))
        out[class_token] = (engine, float64_engine(engine))
    return out


def _rho(model) -> float:
    """Pass error of one float64 evaluation, as tests/reference.py counts it: every layer's longest
    sum here is at most PATCH²·3 = 48 terms (patch embedding; Dense ≤ 2·DIM, attention ≤ TOKENS + 1,
    LayerNormalization DIM), and MultiHeadAttention is 6 such steps (q, k, v, scores, softmax,
    weighted sum + output projection)."""
    steps = sum(6 if isinstance(layer, keras.layers.MultiHeadAttention) else 1 for layer in model.layers)
    return steps * gamma(max(PATCH * PATCH * 3, TOKENS + 1, 2 * DIM) + OPS_PER_LAYER, U64)


def _by_hand(model, layer: str, prefix: int, image, weights):
    """A, g of the layer's tokens (eager, float64), reshaped by hand to the grid, and the logits."""
    dense = model.get_layer("predictions")
    inner = keras.Model(model.inputs, [model.get_layer(layer).output, dense.input])

    def features_and_logits(x):
        features, pooled = inner(x)
        return features, keras.ops.matmul(pooled, dense.kernel) + dense.bias

    x = image.rgb.astype(np.float64)[None] / 255.0
    A, g, logits = capture(features_and_logits, x, weights)
    assert A.shape == (TOKENS + prefix, DIM)
    grid = lambda t: t[prefix:].reshape(GRID[0], GRID[1], DIM)  # noqa: E731 - token r·w + c is cell (r, c)
    return grid(A), grid(g), logits


def test_token_layers_are_eligible_on_the_patch_grid(engines):
    for class_token, (engine, _) in engines.items():
        nodes = {node.path: node for node in iter_layers(layer_tree(engine.model))}
        assert nodes["patch_tokens"].eligible and nodes["final_norm"].eligible
        assert not nodes["predictions"].eligible
        count = TOKENS + int(class_token)
        assert nodes["final_norm"].output_shape == (None, count, DIM)
        assert token_grid(nodes["final_norm"].output_shape, [GRID]) == TokenGrid(int(class_token), *GRID)
        assert engine.capture("final_norm").grid == TokenGrid(int(class_token), *GRID)
        assert engine.capture("patch_embed").grid is None  # a 4-D map is read as it is


def test_token_counts_that_are_not_a_grid_stay_ineligible(tmp_path):
    loaded = save_and_load(tiny_vit(class_token=False, grid_tokens=False), tmp_path, preprocess="unit")
    nodes = {node.path: node for node in iter_layers(layer_tree(loaded.model))}
    assert nodes["seven_tokens"].output_shape == (None, 7, DIM) and not nodes["seven_tokens"].eligible
    with pytest.raises(LayerError, match="no spatial grid"):
        check_eligible(loaded.model, "seven_tokens")
    assert token_grid((None, 7, DIM), []) is None and token_grid((None, 7), [GRID]) is None
    # No patch embedding known: a square after zero or one class token (ViT-B/16 at 224: 197).
    assert token_grid((None, 197, 768), []) == TokenGrid(1, 14, 14)
    assert token_grid((None, 196, 768), []) == TokenGrid(0, 14, 14)
    assert token_grid((None, 198, 768), []) is None


def test_default_layer_is_the_input_of_the_last_attention_with_a_class_token(engines):
    # With a class token read by the classifier, patch tokens after the last attention get no
    # gradient: their map is 0 everywhere.
    assert default_layer(engines[True][0].model) == "norm1"
    assert not engines[True][1].explain(random_image(*SIZE, seed=3), "final_norm").raw.any()
    assert default_layer(engines[False][0].model) == "final_norm"


@pytest.mark.parametrize("class_token,layer", [(True, "norm1"), (True, "tokens"), (False, "final_norm"),
                                               (False, "attention")])
@pytest.mark.parametrize("method", ["gradcam", "layercam", "hirescam", "eigencam"])
def test_maps_at_token_layers_match_the_reshaped_reference(engines, class_token, layer, method):
    twin = engines[class_token][1]
    image = random_image(*SIZE, seed=11)
    rho = 2 * _rho(twin.model)  # engine and reference each evaluate once
    informative = 0
    for cls in range(3):
        A, g, _ = _by_hand(twin.model, layer, int(class_token), image, np.eye(3)[cls])
        A_bounded, g_bounded = ref.inputs(A, g, rho, rho)
        expected = ref.eigencam(A, A_bounded.e) if method == "eigencam" else ref.gradient_map(method, A_bounded, g_bounded)
        result = twin.explain(image, layer, cls, method)
        assert result.raw.shape == GRID
        assert_close(result.raw, expected, what=f"{method} {layer} class {cls}", vacuous_ok=True)
        informative += bool((expected.v > 4 * expected.e).any())
    assert informative >= 2, "the reference maps are too flat for the check to mean anything"


def test_scorecam_runs_on_the_patch_grid(engines):
    engine = engines[True][0]
    result = engine.explain(random_image(*SIZE, seed=12), "norm1", method="scorecam")
    assert result.raw.shape == GRID and np.isfinite(result.raw).all()


def test_cli_says_the_map_is_at_patch_resolution(tmp_path, capsys):
    from PIL import Image

    from gradcam_desktop.cli import main

    tiny_vit(class_token=True, seed=6).save(tmp_path / "vit.keras")
    Image.fromarray(random_image(*SIZE, seed=4).rgb).save(tmp_path / "p.png")
    code = main(["explain", "-m", str(tmp_path / "vit.keras"), "-i", str(tmp_path / "p.png"), "--json",
                 "--preprocess", "unit"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"layer": "norm1"' in out
    assert f"patch resolution ({GRID[0]}×{GRID[1]} patches, 1 class token(s) left out)" in err
    code = main(["explain", "-m", str(tmp_path / "vit.keras"), "-i", str(tmp_path / "p.png"), "-l", "patch_embed"])
    assert code == 0 and "patch resolution" not in capsys.readouterr().err


def test_a_token_layers_map_says_it_is_at_patch_resolution(engines):
    """Issue 11: the window's caption (annotate.caption) and --json say a transformer's map is per patch."""
    from gradcam_desktop.core import annotate

    engine, image = engines[True][0], random_image(*SIZE, seed=13)
    result = engine.explain(image, "final_norm")
    assert result.raw.shape == GRID and result.patch_grid == GRID
    assert f"patch resolution {GRID[0]}×{GRID[1]}" in annotate.caption(result)
    assert result.record()["patch_grid"] == list(GRID)
    cnn = engine.explain(image, "patch_embed")  # a 4-D layer: an ordinary map
    assert cnn.patch_grid is None and "patch resolution" not in annotate.caption(cnn)
