"""Keras Applications with ImageNet weights: registry, cached download, offline errors.

File names, URLs and hashes are copied from keras/src/applications/*.py (Keras 3.15) so the
files land exactly where ``keras.utils.get_file`` would put them and are shared with any
other Keras program. Downloads go through urllib (http(s) and file:// alike), in chunks, with
progress and cancel, into a temp file that is renamed only once complete and verified.

``GRADCAM_ZOO_URL`` overrides where the weights come from: a base URL (https://, http://,
file://) of a flat folder holding the files under their Keras names, e.g. a company mirror
or ``file:///media/usb/keras-weights/`` for offline installs.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from collections.abc import Callable

from gradcam_desktop.core.assets import asset_path
from gradcam_desktop.core.errors import ModelLoadError, ZooDownloadError

ENV_URL = "GRADCAM_ZOO_URL"
CACHE_SUBDIR = "models"          # keras.utils.get_file(..., cache_subdir="models")
CHUNK_BYTES = 256 * 1024         # small enough for a responsive cancel button
TIMEOUT_SECONDS = 30

Progress = Callable[[int, "int | None"], None]
Cancel = Callable[[], bool]

_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ZooEntry:
    """One Keras Application with its ImageNet classifier weights."""

    name: str                          # "MobileNetV2" (keras.applications attribute)
    input_size: tuple[int, int]        # (height, width) the weights were trained at
    weights_file: str                  # file name in the Keras cache
    weights_url: str                   # official download URL
    build: Callable[..., Any]          # build(weights=None) -> keras.Model, 1000-way softmax
    preprocess_mode: str               # "zoo:<name>", see core.preprocess
    file_hash: str | None = None       # md5 (32 hex) or sha256 (64 hex) as Keras has it
    keras_module: str = ""             # keras.applications.<module>.preprocess_input


def _builder(attr: str, size: tuple[int, int]) -> Callable[..., Any]:
    def build(weights: str | None = None) -> Any:
        from keras import applications  # imported lazily: listing the zoo needs no TF

        return getattr(applications, attr)(
            weights=weights, include_top=True, classes=1000,
            classifier_activation="softmax", input_shape=(size[0], size[1], 3))

    build.__doc__ = f"keras.applications.{attr} with a 1000-class softmax head."
    return build


def _entry(name: str, size: int, url: str, file_hash: str | None, module: str) -> ZooEntry:
    return ZooEntry(name=name, input_size=(size, size), weights_file=url.rsplit("/", 1)[1],
                    weights_url=url, build=_builder(name, (size, size)),
                    preprocess_mode=f"zoo:{name}", file_hash=file_hash, keras_module=module)


_ENTRIES = (
    # MobileNetV2 has no hash in Keras; the 1.0/224 variant is the default one.
    _entry("MobileNetV2", 224, _GCS + "mobilenet_v2/"
           "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", None, "mobilenet_v2"),
    _entry("MobileNetV3Small", 224, _GCS + "mobilenet_v3/"
           "weights_mobilenet_v3_small_224_1.0_float.h5",
           "8768d4c2e7dee89b9d02b2d03d65d862", "mobilenet_v3"),
    _entry("MobileNetV3Large", 224, _GCS + "mobilenet_v3/"
           "weights_mobilenet_v3_large_224_1.0_float.h5",
           "59e551e166be033d707958cf9e29a6a7", "mobilenet_v3"),
    _entry("ResNet50", 224, _GCS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
           "2cb95161c43110f7111970584f804107", "resnet50"),
    _entry("EfficientNetB0", 224,
           "https://storage.googleapis.com/keras-applications/efficientnetb0.h5",
           "902e53a9f72be733fc0bcb005b3ebbac", "efficientnet"),
    _entry("EfficientNetV2B0", 224, _GCS + "efficientnet_v2/efficientnetv2-b0.h5",
           "21ecbf6da12460d5c40bb2f29ceb2188", "efficientnet_v2"),
    _entry("VGG16", 224, _GCS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
           "64373286793e3c8b2b4e3219cbf3544b", "vgg16"),
    _entry("InceptionV3", 299, _GCS + "inception_v3/"
           "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
           "9a0d58056eeedaa3f26cb7ebd46da564", "inception_v3"),
    _entry("DenseNet121", 224, _GCS + "densenet/"
           "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
           "9d60b8095a5708f2dcce2bca79d332c7", "densenet"),
    _entry("Xception", 299, _GCS + "xception/xception_weights_tf_dim_ordering_tf_kernels.h5",
           "0a58e3b7378bc2990ea3b43d5981f1f6", "xception"),
    _entry("ConvNeXtTiny", 224, _GCS + "convnext/convnext_tiny.h5",
           "8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff", "convnext"),
)
REGISTRY: dict[str, ZooEntry] = {e.name: e for e in _ENTRIES}


def zoo_names() -> list[str]:
    """Names of the available zoo models, smallest/most common first."""
    return list(REGISTRY)


def zoo_entry(name: str) -> ZooEntry:
    """Look a model up by name, case-insensitively ("mobilenetv2" works too)."""
    entry = REGISTRY.get(name) or {k.lower(): v for k, v in REGISTRY.items()}.get(name.lower())
    if entry is None:
        raise ModelLoadError(f"Unknown zoo model '{name}'. Available: {', '.join(REGISTRY)}.")
    return entry


entry = zoo_entry  # short alias used by core.models


def keras_home() -> Path:
    """The Keras cache root, resolved like keras.utils.get_file (read at call time)."""
    base = os.environ.get("KERAS_HOME")
    if not base:
        home = os.path.expanduser("~")
        base = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    base = os.path.expanduser(base)
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:
        pass
    if not os.access(base, os.W_OK):  # read-only home: Keras falls back to /tmp/.keras too
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(),
                            ".keras")
    return Path(base)


def weights_path(name: str) -> Path:
    """Where the Keras cache keeps (or will keep) the ImageNet weights of ``name``."""
    return keras_home() / CACHE_SUBDIR / zoo_entry(name).weights_file


def download_url(name: str) -> str:
    """Official Keras URL, or the same file name under $GRADCAM_ZOO_URL."""
    entry = zoo_entry(name)
    base = os.environ.get(ENV_URL, "").strip()
    return base.rstrip("/") + "/" + entry.weights_file if base else entry.weights_url


def _hash_matches(path: Path, expected: str | None) -> bool:
    if not expected:
        return True
    hasher = hashlib.sha256() if len(expected) == 64 else hashlib.md5()  # Keras' "auto"
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            hasher.update(chunk)
    return hasher.hexdigest() == expected.lower()


def fetch_weights(name: str, *, progress: Progress | None = None,
                  cancel: Cancel | None = None) -> Path:
    """Return the cached weights file of ``name``, downloading it first if needed."""
    entry = zoo_entry(name)
    target = weights_path(entry.name)
    stale = target.is_file() and not _hash_matches(target, entry.file_hash)
    if target.is_file() and not stale:
        return target
    url = download_url(entry.name)
    manual = f"Download {url} and save it as {target}, then try again."
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
    except OSError as e:
        raise ZooDownloadError(f"Cannot write to the Keras cache folder {target.parent} "
                               f"({e.strerror or e}).") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(url, out, progress, cancel, entry.name, manual, stale)
        if not _hash_matches(tmp, entry.file_hash):
            raise ZooDownloadError(f"The downloaded ImageNet weights for {entry.name} are "
                                   f"damaged (checksum mismatch), nothing was saved. {manual}")
        os.replace(tmp, target)  # atomic: the cache never holds a half file
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _download(url: str, out: Any, progress: Progress | None, cancel: Cancel | None,
              name: str, manual: str, stale: bool) -> None:
    """Copy ``url`` into the open file ``out`` chunk by chunk."""
    def offline(reason: str) -> ZooDownloadError:
        note = " (the file there now does not match the expected checksum)" if stale else ""
        return ZooDownloadError(f"Cannot download ImageNet weights for {name} ({reason}). "
                                f"{manual}{note}")

    if cancel and cancel():
        raise ZooDownloadError("Download cancelled")
    request = urllib.request.Request(url, headers={"User-Agent": "gradcam-desktop"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            if progress:
                progress(0, total)
            while True:
                if cancel and cancel():
                    raise ZooDownloadError("Download cancelled")
                chunk = resp.read(CHUNK_BYTES)
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:  # disk full etc.: not a network problem
                    raise ZooDownloadError(f"Cannot save ImageNet weights for {name} "
                                           f"({e.strerror or e}).") from None
                done += len(chunk)
                if progress:
                    progress(done, total)
    except urllib.error.HTTPError as e:
        raise offline(f"server answered HTTP {e.code}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError,
            ValueError):
        raise offline("no network?") from None
    if total is not None and done != total:
        raise offline(f"connection dropped after {done} of {total} bytes")


def build_zoo_model(name: str, *, progress: Progress | None = None,
                    cancel: Cancel | None = None) -> Any:
    """Fetch the weights (if needed) and return the ImageNet classifier ``name``."""
    entry = zoo_entry(name)
    path = fetch_weights(entry.name, progress=progress, cancel=cancel)
    model = entry.build(weights=None)
    try:
        # Keras 3 loads these legacy .h5 application weights by topology (layer order).
        model.load_weights(str(path))
    except Exception as e:  # noqa: BLE001 - any failure here means a wrong/damaged file
        raise ModelLoadError(f"The ImageNet weights for {entry.name} at {path} do not fit "
                             f"the model ({type(e).__name__}); delete that file and try "
                             "again.") from None
    return model


@lru_cache(maxsize=1)
def _class_names() -> tuple[str, ...]:
    text = asset_path("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise ModelLoadError(f"imagenet_classes.txt holds {len(names)} names instead of 1000; "
                             "the installation is damaged.")
    return names


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in index order (shipped, no network)."""
    return list(_class_names())
