"""The display map's path from the worker to the screen and to the exported files.

The worker sends the display map as read-only uint8 (0..255) at the picture's size; the export
writes exactly what the engine's float map gives (the same PNGs as before the change).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gradcam_desktop.core.batch import OutputStyle
from gradcam_desktop.core.overlay import blend, display_map
from gradcam_desktop.core.types import MapResult, Prediction
from gradcam_desktop.ui.export import write_export
from gradcam_desktop.ui.worker import GradCamWorker

TIMEOUT = 60_000  # the first map of a layer traces a tf.function


def test_worker_sends_the_core_map_as_read_only_uint8(qtbot, model_file, image_files):
    """A quarter of the float map's memory, and exactly what blend() and the export round it to."""
    worker = GradCamWorker(cache_entries=0, precompute=False)
    with qtbot.waitSignal(worker.ready, timeout=TIMEOUT):
        worker.start()
    try:
        with qtbot.waitSignal(worker.modelLoaded, timeout=TIMEOUT):
            worker.load_model(str(model_file))
        with qtbot.waitSignal(worker.imagesLoaded, timeout=TIMEOUT) as loaded:
            worker.load_images([str(p) for p in image_files])
        image = loaded.args[1][1]
        ids = []
        with qtbot.waitSignal(worker.mapReady, timeout=TIMEOUT, check_params_cb=lambda rid, _r: rid in ids) as got:
            ids.append(worker.explain(image.key, "backbone/conv2", 2))
        result = got.args[1]
    finally:
        worker.stop()
        assert worker.wait(20_000)
    want, flat = display_map(result.raw, image.rgb.shape[:2])
    assert result.display.dtype == np.uint8 and not result.display.flags.writeable
    np.testing.assert_array_equal(result.display, np.round(want * 255.0).astype(np.uint8))
    assert result.flat == flat


@pytest.mark.parametrize("alpha, colormap", [(0.7, "turbo"), (0.35, "jet")])
def test_export_of_a_uint8_map_writes_the_float_maps_files(tmp_path, alpha, colormap):
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    raw = rng.random((7, 9)).astype(np.float32)
    display, flat = display_map(raw, rgb.shape[:2])
    base = MapResult(raw=raw, layer="conv", class_index=1, class_name="dog", score=0.5, flat=flat,
                     prediction=Prediction(np.array([0.5, 0.5]), [(0, "cat", 0.5)], "softmax"))
    style = OutputStyle(alpha=alpha, colormap=colormap)
    quantized = np.round(display * 255.0).astype(np.uint8)
    write_export(tmp_path / "float.png", rgb, base.with_(display=display), style)
    write_export(tmp_path / "uint8.png", rgb, base.with_(display=quantized), style)
    for suffix in (".png", "_map.png"):
        a = cv2.imread(str(tmp_path / f"float{suffix}"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / f"uint8{suffix}"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(a, b)
    overlay = cv2.cvtColor(cv2.imread(str(tmp_path / "uint8.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(overlay, blend(rgb, display, alpha, colormap))
    np.testing.assert_array_equal(np.load(tmp_path / "uint8.npy"), raw)
    assert json.loads((tmp_path / "uint8.json").read_text())["colormap"] == colormap
