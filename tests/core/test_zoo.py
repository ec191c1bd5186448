"""core.zoo: registry matches keras.applications; downloads are local (file://) or fail."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from gradcam_desktop.core import zoo
from gradcam_desktop.core.errors import ModelLoadError, ZooDownloadError

EXPECTED = ["MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "ResNet50",
            "EfficientNetB0", "EfficientNetV2B0", "VGG16", "InceptionV3", "DenseNet121",
            "Xception", "ConvNeXtTiny"]
OFFLINE_URL = "http://127.0.0.1:9/"  # discard port: connection refused, never the internet


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own Keras cache and never talks to the real download server."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv(zoo.ENV_URL, OFFLINE_URL)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A file:// mirror folder holding locally made (random) MobileNetV2 weights."""
    from keras.src.legacy.saving import legacy_h5_format

    folder = tmp_path_factory.mktemp("mirror")
    model = zoo.zoo_entry("MobileNetV2").build(weights=None)
    # Same layout as the official files: legacy weights-only HDF5, loaded by topology.
    with h5py.File(folder / zoo.zoo_entry("MobileNetV2").weights_file, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", model.predict(x, verbose=0))
    return folder


def _cache_files() -> list[Path]:
    models = zoo.keras_home() / zoo.CACHE_SUBDIR
    return sorted(models.iterdir()) if models.exists() else []


# ------------------------------------------------------------ registry

def test_registry_names_and_fields():
    assert zoo.zoo_names() == EXPECTED
    for name in EXPECTED:
        entry = zoo.zoo_entry(name)
        assert entry.name == name
        assert entry.preprocess_mode == f"zoo:{name}"
        assert entry.weights_url.endswith("/" + entry.weights_file)
        assert entry.weights_url.startswith("https://storage.googleapis.com/")
        assert entry.input_size == ((299, 299) if name in ("InceptionV3", "Xception")
                                    else (224, 224))
    assert zoo.zoo_entry("mobilenetv2").name == "MobileNetV2"
    with pytest.raises(ModelLoadError, match="Unknown zoo model 'NoSuchNet'.*MobileNetV2"):
        zoo.zoo_entry("NoSuchNet")


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
@pytest.mark.parametrize("name", EXPECTED)
def test_registry_matches_keras_applications(name, monkeypatch):
    """Ask Keras itself which file/URL/hash it would fetch (get_file is intercepted)."""
    import keras
    from keras.src.utils import file_utils

    class Intercepted(Exception):
        pass

    seen = {}

    def fake_get_file(fname=None, origin=None, *args, **kwargs):
        seen.update(fname=fname, origin=origin, file_hash=kwargs.get("file_hash"),
                    cache_subdir=kwargs.get("cache_subdir"))
        raise Intercepted

    monkeypatch.setattr(file_utils, "get_file", fake_get_file)
    entry = zoo.zoo_entry(name)
    with pytest.raises(Intercepted):
        getattr(keras.applications, name)(weights="imagenet")
    assert seen == {"fname": entry.weights_file, "origin": entry.weights_url,
                    "file_hash": entry.file_hash, "cache_subdir": "models"}
    keras.backend.clear_session()


def test_build_gives_imagenet_classifier():
    model = zoo.zoo_entry("MobileNetV3Small").build(weights=None)
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)
    assert model.layers[-1].get_config()["activation"] == "softmax"


def test_weights_path_respects_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "elsewhere"))
    path = zoo.weights_path("ResNet50")
    assert path == (tmp_path / "elsewhere" / "models" /
                    "resnet50_weights_tf_dim_ordering_tf_kernels.h5")


def test_download_url_override(monkeypatch):
    monkeypatch.setenv(zoo.ENV_URL, "file:///mnt/mirror/")
    assert zoo.download_url("VGG16") == \
        "file:///mnt/mirror/vgg16_weights_tf_dim_ordering_tf_kernels.h5"
    monkeypatch.delenv(zoo.ENV_URL)
    assert zoo.download_url("VGG16") == zoo.zoo_entry("VGG16").weights_url


# ------------------------------------------------------------ fetching

def test_fetch_from_file_url_and_build(mirror, monkeypatch):
    monkeypatch.setenv(zoo.ENV_URL, mirror.as_uri())
    calls: list[tuple[int, int | None]] = []
    model = zoo.build_zoo_model("MobileNetV2", progress=lambda d, t: calls.append((d, t)))

    source = mirror / zoo.zoo_entry("MobileNetV2").weights_file
    cached = zoo.weights_path("MobileNetV2")
    assert cached.read_bytes() == source.read_bytes()
    assert _cache_files() == [cached]  # no temp files left behind
    size = source.stat().st_size
    done = [d for d, _ in calls]
    assert done[0] == 0 and done[-1] == size and done == sorted(done)
    assert len(calls) > 3 and all(t == size for _, t in calls)

    x, y = np.load(mirror / "x.npy"), np.load(mirror / "y.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


def test_cached_file_used_without_network(mirror):
    cached = zoo.weights_path("MobileNetV2")
    cached.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(mirror / cached.name, cached)
    # $GRADCAM_ZOO_URL points at a closed port: any download attempt would fail.
    assert zoo.fetch_weights("MobileNetV2", progress=lambda d, t: pytest.fail("downloaded")) \
        == cached
    model = zoo.build_zoo_model("MobileNetV2")
    x, y = np.load(mirror / "x.npy"), np.load(mirror / "y.npy")
    np.testing.assert_allclose(model.predict(x, verbose=0), y, rtol=1e-5, atol=1e-6)


def test_offline_error_names_url_and_path():
    with pytest.raises(ZooDownloadError) as err:
        zoo.fetch_weights("MobileNetV2")
    text = str(err.value)
    path = zoo.weights_path("MobileNetV2")
    assert "\n" not in text
    assert text == (f"Cannot download ImageNet weights for MobileNetV2 (no network?). "
                    f"Download {OFFLINE_URL}{path.name} and save it as {path}, then try again.")
    assert _cache_files() == []


def test_missing_file_on_mirror(tmp_path, monkeypatch):
    empty = tmp_path / "empty_mirror"
    empty.mkdir()
    monkeypatch.setenv(zoo.ENV_URL, empty.as_uri())
    with pytest.raises(ZooDownloadError, match="Cannot download ImageNet weights for ResNet50"):
        zoo.fetch_weights("ResNet50")
    assert _cache_files() == []


def test_cancel_leaves_no_file(mirror, monkeypatch):
    monkeypatch.setenv(zoo.ENV_URL, mirror.as_uri())
    progress: list[int] = []
    with pytest.raises(ZooDownloadError, match="^Download cancelled$"):
        zoo.fetch_weights("MobileNetV2", progress=lambda d, t: progress.append(d),
                          cancel=lambda: len(progress) >= 3)
    assert 0 < progress[-1] < (mirror / zoo.zoo_entry("MobileNetV2").weights_file).stat().st_size
    assert _cache_files() == []
    with pytest.raises(ZooDownloadError, match="^Download cancelled$"):
        zoo.fetch_weights("MobileNetV2", cancel=lambda: True)  # before the first byte
    assert _cache_files() == []


def test_hash_mismatch_refused(tmp_path, monkeypatch):
    folder = tmp_path / "bad_mirror"
    folder.mkdir()
    entry = zoo.zoo_entry("MobileNetV3Small")
    (folder / entry.weights_file).write_bytes(b"not the real weights" * 1000)
    monkeypatch.setenv(zoo.ENV_URL, folder.as_uri())
    with pytest.raises(ZooDownloadError, match="checksum mismatch") as err:
        zoo.fetch_weights("MobileNetV3Small")
    assert str(zoo.weights_path("MobileNetV3Small")) in str(err.value)
    assert _cache_files() == []


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_hash_verified_and_stale_cache_replaced(tmp_path, monkeypatch, algorithm):
    folder = tmp_path / "mirror2"
    folder.mkdir()
    entry = zoo.zoo_entry("MobileNetV3Small")
    payload = b"pretend weights " * 5000
    (folder / entry.weights_file).write_bytes(payload)
    digest = getattr(hashlib, algorithm)(payload).hexdigest()
    monkeypatch.setitem(zoo.REGISTRY, entry.name, dataclasses.replace(entry, file_hash=digest))
    monkeypatch.setenv(zoo.ENV_URL, folder.as_uri())

    cached = zoo.weights_path(entry.name)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"half a file")  # e.g. copied by hand, wrong: re-downloaded
    assert zoo.fetch_weights(entry.name) == cached
    assert cached.read_bytes() == payload
    assert _cache_files() == [cached]


def test_stale_cache_offline_message(monkeypatch):
    cached = zoo.weights_path("MobileNetV3Small")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"wrong")
    with pytest.raises(ZooDownloadError, match="does not match the expected checksum"):
        zoo.fetch_weights("MobileNetV3Small")
    assert cached.read_bytes() == b"wrong"  # left alone: the user may want to look at it


def test_wrong_weights_file_gives_clear_error(mirror, monkeypatch):
    # A valid HDF5 for another architecture (hash-less MobileNetV2 slot): load fails clearly.
    from keras.src.legacy.saving import legacy_h5_format

    other = zoo.zoo_entry("MobileNetV3Small").build(weights=None)
    cached = zoo.weights_path("MobileNetV2")
    cached.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(cached, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, other)
    with pytest.raises(ModelLoadError, match="do not fit the model"):
        zoo.build_zoo_model("MobileNetV2")


# ------------------------------------------------------------ class names, imports

def test_imagenet_class_names():
    names = zoo.imagenet_class_names()
    assert len(names) == 1000
    assert names[0] == "tench" and names[1] == "goldfish"
    assert names[281] == "tabby" and names[285] == "Egyptian cat"
    assert names[954] == "banana" and names[999] == "toilet tissue"
    assert names[134] == names[517] == "crane"
    assert names[638] == names[639] == "maillot"
    assert len(set(names)) == 998
    assert all(name == name.strip() and "_" not in name for name in names)
    names.append("x")  # callers get their own copy
    assert len(zoo.imagenet_class_names()) == 1000


def test_light_paths_do_not_import_tensorflow():
    # Listing the zoo, reading class names and the NumPy-only preprocessing modes must not
    # pull in TensorFlow (the window lists the zoo before TensorFlow is loaded).
    code = ("import sys, numpy as np\n"
            "from gradcam_desktop.core import zoo, safety, preprocess\n"
            "zoo.zoo_names(); zoo.imagenet_class_names(); zoo.weights_path('VGG16')\n"
            "for mode in ('raw', 'unit', 'symmetric'):\n"
            "    preprocess.apply(np.zeros((1, 2, 2, 3), np.float32), mode)\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
