"""The `gradcam` command line end to end, on real model and image files made here."""

from __future__ import annotations

import csv
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.cli import main
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model

from model_factory import gap_dense_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A model with a labels sidecar and a few images of different sizes."""
    folder = tmp_path_factory.mktemp("cli")
    model_path = folder / "shapes.keras"
    gap_dense_model((48, 64, 3), classes=3, seed=31).save(model_path)
    (folder / "shapes.labels.txt").write_text("cat\ndog\nbird\n")
    rng = np.random.default_rng(0)
    images = folder / "images"
    images.mkdir()
    for name, size in (("a.png", (90, 120)), ("b.jpg", (64, 64)), ("c.png", (200, 150))):
        rgb = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(images / name)
    return {"model": model_path, "images": images, "folder": folder}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_json_writes_image_sized_overlay_and_raw_map(files, capsys, tmp_path):
    image = files["images"] / "a.png"
    code, out, err = run(capsys, "explain", "--model", files["model"], "--image", image, "--class", "dog",
                         "--out", tmp_path / "o.png", "--heatmap", tmp_path / "raw.npy", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["layer"] == "backbone/last_conv"
    assert (result["class_index"], result["class_name"]) == (1, "dog")
    assert 0.0 <= result["score"] <= 1.0 and result["seconds"] > 0
    assert result["heatmap_shape"] == [12, 16]
    overlay = cv2.imread(str(tmp_path / "o.png"))
    assert overlay.shape == (90, 120, 3)  # the image's own resolution, not the model's
    raw = np.load(tmp_path / "raw.npy")
    engine = GradCam(load_model(files["model"]))
    expected = engine.explain(load_image(image), "backbone/last_conv", 1)
    # The same engine on the same input in the same process: only the order of multithreaded sums
    # may differ between the two runs (a few ulps of these O(1) values), not the machine.
    np.testing.assert_allclose(raw, expected.raw, rtol=1e-5, atol=1e-6 * float(expected.raw.max()))
    assert result["score"] == pytest.approx(expected.score, rel=1e-5)


def test_explain_without_outputs_says_what_to_add(files, capsys, tmp_path):
    code, out, err = run(capsys, "explain", "-m", files["model"], "-i", files["images"] / "a.png")
    assert code == 0, err
    first, second = out.strip().splitlines()
    assert re.match(r"Grad-CAM · '\w+' \(class \d, p = [0-9.]+, score y = [-0-9.e]+\) at layer backbone/last_conv: "
                    r"12×16 map", first), first
    assert "nothing written" in second and "--out" in second and "--heatmap" in second
    assert not list(tmp_path.iterdir())


def test_alpha_zero_overlay_is_the_original_image(files, capsys, tmp_path):
    image = files["images"] / "a.png"
    code, _, err = run(capsys, "explain", "-m", files["model"], "-i", image, "--alpha", "0", "-o", tmp_path / "o.png")
    assert code == 0, err
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "o.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, np.asarray(Image.open(image).convert("RGB")))


def test_caption_frames_the_unchanged_picture_with_text_bands(files, capsys, tmp_path):
    image = files["images"] / "a.png"
    code, _, err = run(capsys, "explain", "-m", files["model"], "-i", image, "--alpha", "0", "--caption",
                       "-o", tmp_path / "o.png")
    assert code == 0, err
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "o.png")), cv2.COLOR_BGR2RGB)
    original = np.asarray(Image.open(image).convert("RGB"))
    height, width = original.shape[:2]
    assert written.shape[1] >= width and written.shape[0] > height
    # The picture sits unchanged (centred when the caption needs more width) between a caption
    # band above and a legend band below.
    left = (written.shape[1] - width) // 2
    offsets = [top for top in range(written.shape[0] - height + 1)
               if np.array_equal(written[top:top + height, left:left + width], original)]
    assert len(offsets) == 1 and 0 < offsets[0] < written.shape[0] - height
    above, below = written[:offsets[0]], written[offsets[0] + height:]
    assert (above.min(axis=2) < 128).any() and (below.std(axis=(0, 2)) > 0).any()  # dark text; a colour ramp


def test_predict_and_layers(files, capsys):
    code, out, _ = run(capsys, "predict", "--model", files["model"], "--image", files["images"] / "b.jpg",
                       "--top", "2", "--json")
    assert code == 0
    rows = json.loads(out)["predictions"]
    assert len(rows) == 2 and rows[0]["probability"] >= rows[1]["probability"]
    assert {r["class_name"] for r in rows} <= {"cat", "dog", "bird"}
    code, out, _ = run(capsys, "layers", "--model", files["model"], "--json")
    layers = {row["path"]: row for row in json.loads(out)["layers"]}
    assert layers["backbone/last_conv"]["default"] and layers["backbone/last_conv"]["eligible"]
    assert not layers["gap"]["eligible"] and layers["backbone/conv1"]["output_shape"] == [None, 48, 64, 8]
    code, out, _ = run(capsys, "layers", "--model", files["model"])
    assert "* backbone/last_conv" in out


def test_batch_writes_overlays_maps_and_csv_and_survives_a_bad_image(files, capsys, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in files["images"].iterdir():
        (inputs / path.name).write_bytes(path.read_bytes())
    (inputs / "broken.png").write_bytes((files["images"] / "a.png").read_bytes()[:200])
    out_dir = tmp_path / "out" / "nested"
    code, _, err = run(capsys, "batch", "--model", files["model"], "--heatmaps", "--class", "0",
                       "--out-dir", out_dir, inputs)
    assert code == 1  # one image failed
    assert "broken.png" in err and "3 of 4 images explained" in err
    for stem, size in (("a", (90, 120)), ("b", (64, 64)), ("c", (200, 150))):
        assert cv2.imread(str(out_dir / f"{stem}.png")).shape[:2] == size
        assert np.load(out_dir / f"{stem}.npy").shape == (12, 16)
    assert not (out_dir / "broken.png").exists()
    with open(out_dir / "results.csv", newline="") as handle:
        rows = {Path(row["image"]).name: row for row in csv.DictReader(handle)}
    assert set(rows) == {"a.png", "b.jpg", "c.png", "broken.png"}
    assert rows["a.png"]["explained_index"] == "0" and rows["a.png"]["layer"] == "backbone/last_conv"
    assert rows["a.png"]["predicted_name"] in {"cat", "dog", "bird"}
    assert "truncated" in rows["broken.png"]["error"] or "damaged" in rows["broken.png"]["error"]
    assert not list(out_dir.glob("*.tmp")) and not list(out_dir.glob(".*"))


def test_batch_all_good_exits_zero(files, capsys, tmp_path):
    code, _, err = run(capsys, "batch", "-m", files["model"], "--out-dir", tmp_path, files["images"] / "a.png",
                       files["images"] / "b.jpg")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.png", "b.json", "b.png", "results.csv"]
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = {Path(row["image"]).name: row for row in csv.DictReader(handle)}
    for stem, name in (("a", "a.png"), ("b", "b.jpg")):
        sidecar = json.loads((tmp_path / f"{stem}.json").read_text())
        # The sidecar says what its picture shows, the same as the table's row.
        assert Path(sidecar["image"]).name == name and sidecar["files"] == {"overlay": f"{stem}.png"}
        assert (sidecar["class_index"], sidecar["class_name"], sidecar["layer"], sidecar["method"]) == (
            int(rows[name]["explained_index"]), rows[name]["explained_name"], rows[name]["layer"], "gradcam")
        assert sidecar["alpha"] == 0.5 and sidecar["colormap"] == "jet"


# -- bad input: one line on stderr, exit 1, nothing written ---------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header claims width × height pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + _chunk(b"IEND", b""))


def _lambda_model(path: Path, marker: Path) -> None:
    m = str(marker)  # kept in the lambda's closure, which Keras stores in the file
    touch = lambda x: (open(m, "w").close(), x)[1]  # noqa: E731 - must be a lambda to be saved

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(touch)(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    model.save(path)
    marker.unlink()


@pytest.fixture(scope="module")
def bad(files, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not really a zip")
    (folder / "text.h5").write_text("hello, I am not HDF5")
    (folder / "empty.keras").write_bytes(b"")
    keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]).save(folder / "mlp.keras")
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(keras.layers.Add()([a, b])))
    keras.Model([a, b], keras.layers.Dense(2)(x)).save(folder / "two_inputs.keras")
    _lambda_model(folder / "lambda.keras", folder / "marker")
    saved = folder / "savedmodel"
    import tensorflow as tf

    tf.saved_model.save(tf.Module(), str(saved))
    good = (files["images"] / "a.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.png").write_text("not an image")
    (folder / "zero.png").write_bytes(b"")
    (folder / "huge.png").write_bytes(_png_header(100_000, 100_000))
    (folder / "no_images").mkdir()
    return folder


BAD_MODELS = [
    ("corrupt.keras", "corrupt|not a valid"),
    ("text.h5", "not an HDF5"),
    ("empty.keras", "empty"),
    ("mlp.keras", "no layer with a spatial map"),
    ("two_inputs.keras", "2 inputs"),
    ("lambda.keras", "Lambda"),
    ("savedmodel", "SavedModel"),
    ("missing.keras", "not found|does not exist|No such"),
]


def assert_one_error_line(code: int, err: str, message: str, out_png: Path, name: str = "") -> None:
    """Exit 1, exactly one "Error: …" line matching ``message``, no traceback, nothing written."""
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and name in lines[0], err
    assert re.search(message, lines[0], flags=re.I), lines[0]
    assert "Traceback" not in err and not out_png.exists()


@pytest.mark.parametrize("name,message", BAD_MODELS)
def test_bad_models_get_one_clear_line(files, bad, capsys, tmp_path, name, message):
    out_png = tmp_path / "o.png"
    code, _, err = run(capsys, "explain", "-m", bad / name, "-i", files["images"] / "a.png", "-o", out_png)
    assert_one_error_line(code, err, message, out_png)


def test_lambda_model_runs_no_code_unless_trusted(files, bad, capsys, tmp_path):
    marker = bad / "marker"
    code, _, err = run(capsys, "explain", "-m", bad / "lambda.keras", "-i", files["images"] / "a.png")
    assert code == 1 and "--trust-model" in err and not marker.exists()
    code, _, err = run(capsys, "explain", "-m", bad / "lambda.keras", "-i", files["images"] / "a.png", "--trust-model")
    assert code == 0, err
    assert marker.exists()  # proves the refusal above really kept the Lambda from running
    marker.unlink()


BAD_IMAGES = [
    ("truncated.png", "truncated|damaged"),
    ("notes.png", "not an image"),
    ("zero.png", "empty"),
    ("huge.png", "too large"),
    ("missing.png", "not found"),
    ("no_images", "folder"),
]


@pytest.mark.parametrize("name,message", BAD_IMAGES)
def test_bad_images_get_one_clear_line(files, bad, capsys, tmp_path, name, message):
    out_png = tmp_path / "o.png"
    code, _, err = run(capsys, "explain", "-m", files["model"], "-i", bad / name, "-o", out_png)
    assert_one_error_line(code, err, message, out_png, name)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--layer", "nope"], "No layer 'nope'.*Eligible layers: .*backbone/last_conv"),
        (["--layer", "gap"], "no spatial grid"),
        (["--class", "3"], "out of range"),
        # Few classes: all of them are listed; a typo gets the close match first.
        (["--class", "zebra"], r"No class named 'zebra'\. This model's classes: cat, dog, bird\.$"),
        (["--class", "dgo"], r"No class named 'dgo'\. Did you mean: dog\? This model's classes: cat, dog, bird\."),
        (["--class", "Brid"], r"Did you mean: bird\?"),
    ],
)
def test_bad_layer_and_class_choices(files, capsys, tmp_path, extra, message):
    code, _, err = run(capsys, "explain", "-m", files["model"], "-i", files["images"] / "a.png",
                       "-o", tmp_path / "o.png", *extra)
    assert code == 1
    assert re.search(message, err), err
    assert not (tmp_path / "o.png").exists()


def test_unwritable_output_folder(files, capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = run(capsys, "explain", "-m", files["model"], "-i", files["images"] / "a.png",
                       "-o", blocker / "o.png")
    assert code == 1 and err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "batch", "-m", files["model"], "--out-dir", blocker / "out", files["images"])
    assert code == 1 and "Cannot create the output folder" in err


def test_animated_gif_uses_first_frame_with_a_notice(files, capsys, tmp_path):
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    code, _, err = run(capsys, "explain", "-m", files["model"], "-i", gif, "--alpha", "0", "-o", tmp_path / "o.png")
    assert code == 0
    assert "frame 1 of 2" in err
    written = cv2.imread(str(tmp_path / "o.png"))
    assert tuple(written[10, 10]) == (0, 0, 255)  # BGR red: the first frame


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--image", "x.png"])  # --model missing
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "-m", "demo", "-i", "x.png", "--alpha", "2"])
    assert exit_info.value.code == 2


def test_console_error_is_exactly_one_line_without_tensorflow_noise(files, tmp_path):
    env = {**os.environ}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "gradcam_desktop.cli", "explain", "-m", str(files["model"]),
         "-i", str(tmp_path / "missing.png")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path / 'missing.png'} not found."]


def test_batch_skips_a_missing_input_and_goes_on(files, capsys, tmp_path):
    missing = tmp_path / "typo.png"
    code, _, err = run(capsys, "batch", "-m", files["model"], "--out-dir", tmp_path / "out",
                       files["images"] / "a.png", missing)
    assert code == 1
    assert f"Skipped {missing}: {missing} not found." in err and "1 of 2 images explained" in err
    assert (tmp_path / "out" / "a.png").is_file()
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        rows = {row["image"]: row for row in csv.DictReader(handle)}
    assert rows[str(missing)]["error"] and not rows[str(files["images"] / "a.png")]["error"]
    code, _, err = run(capsys, "batch", "-m", files["model"], "--out-dir", tmp_path / "out2", missing)
    assert code == 1 and err.strip() == f"Error: {missing} not found." and not (tmp_path / "out2").exists()
