"""GradCam's optional input cache: the same batch and the same maps, without resizing again."""

from __future__ import annotations

import numpy as np

from gradcam_desktop.core import gradcam as gradcam_module
from gradcam_desktop.core.gradcam import GradCam
from model_factory import gap_dense_model, random_image, save_and_load


def test_input_cache_reuses_the_batch_and_changes_no_number(tmp_path, monkeypatch):
    loaded = save_and_load(gap_dense_model(seed=31), tmp_path)
    plain, cached = GradCam(loaded), GradCam(loaded, input_cache=2)
    images = [random_image(120, 90, seed=s) for s in (32, 33, 34)]
    resized = []
    real = gradcam_module.to_model_input
    monkeypatch.setattr(gradcam_module, "to_model_input", lambda *a: resized.append(a[1]) or real(*a))

    first = cached.model_input(images[0])
    assert cached.model_input(images[0]) is first and not first.flags.writeable
    np.testing.assert_array_equal(first, plain.model_input(images[0]))
    resized.clear()
    for layer in ("backbone/last_conv", "backbone/conv1"):
        for cls in range(4):
            a, b = plain.explain(images[0], layer, cls), cached.explain(images[0], layer, cls)
            np.testing.assert_array_equal(a.raw, b.raw)
            assert a.score == b.score and a.class_index == b.class_index
    assert len(resized) == 8  # only the engine without the cache resized, once per map
    assert plain.model_input(images[0]).flags.writeable  # off by default: a private copy each time

    # Bounded: the oldest image drops out; a new array under the same image is not confused with it.
    cached.model_input(images[1])
    cached.model_input(images[2])
    resized.clear()
    cached.model_input(images[0])
    assert len(resized) == 1
    images[0].rgb = images[1].rgb.copy()
    np.testing.assert_array_equal(cached.model_input(images[0]), plain.model_input(images[1]))
