"""Tiny Vision-Transformer-like Keras models for tests, made of Keras' own layers only.

Conv2D patch embedding (kernel = stride = PATCH) → Reshape to tokens → [a class token, made by a
Dense of the mean token and concatenated in front] → one transformer block (LayerNormalization,
MultiHeadAttention, residual, GELU MLP) → classifier on the class token (Cropping1D) or on the
mean token (GlobalAveragePooling1D).
"""

from __future__ import annotations

import keras

SIZE = (16, 24)  # input height, width: a non-square grid catches a transposed reshape
PATCH = 4
GRID = (SIZE[0] // PATCH, SIZE[1] // PATCH)  # 4 × 6
DIM = 8


def tiny_vit(class_token: bool = True, classes: int = 3, seed: int = 0, grid_tokens: bool = True):
    """A ViT-like classifier. ``grid_tokens=False`` adds a layer with 7 tokens (not a grid)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((*SIZE, 3))
    x = keras.layers.Conv2D(DIM, PATCH, strides=PATCH, name="patch_embed")(inputs)
    x = keras.layers.Reshape((GRID[0] * GRID[1], DIM), name="patch_tokens")(x)
    if class_token:
        mean = keras.layers.GlobalAveragePooling1D(name="token_mean")(x)
        cls = keras.layers.Dense(DIM, name="cls_dense")(mean)
        cls = keras.layers.Reshape((1, DIM), name="cls_token")(cls)
        x = keras.layers.Concatenate(axis=1, name="tokens")([cls, x])
    y = keras.layers.LayerNormalization(name="norm1")(x)
    y = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")(y, y)
    x = keras.layers.Add(name="residual1")([x, y])
    y = keras.layers.LayerNormalization(name="norm2")(x)
    y = keras.layers.Dense(2 * DIM, activation="gelu", name="mlp1")(y)
    y = keras.layers.Dense(DIM, name="mlp2")(y)
    x = keras.layers.Add(name="block_out")([x, y])
    x = keras.layers.LayerNormalization(name="final_norm")(x)
    if not grid_tokens:
        keep = GRID[0] * GRID[1] + int(class_token) - 7
        x = keras.layers.Cropping1D((0, keep), name="seven_tokens")(x)
    if class_token and grid_tokens:
        x = keras.layers.Cropping1D((0, GRID[0] * GRID[1]), name="take_cls")(x)
        x = keras.layers.Flatten(name="cls_out")(x)
    else:
        x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_vit")
