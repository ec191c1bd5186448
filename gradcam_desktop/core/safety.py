"""Refuse model files that would run code or exhaust memory, before Keras ever reads them.

A .keras/.h5 model file is a program: its config names Python classes and functions that
Keras instantiates, and the sizes Keras allocates. So before Keras sees a file:

1. its container is checked without trusting it: the zip directory's size from the end
   record, declared member sizes against their stored data, reads in bounded pieces; HDF5
   attribute shapes, dataset sizes from their headers, no data kept in other files —
   archive.py;
2. its config is scanned against an allowlist of Keras building blocks — scan.py;
3. the config is built abstractly to learn what it would allocate — footprint.py — and that
   must match what the weights file declares, what the file really stores and the memory
   this machine has.

Loaders then call ``keras.saving.load_model(keras_path(checked), compile=False,
safe_mode=not checked.runs_code)`` — or Keras 2's loader (keras2.py) when ``checked.keras == 2``: the
file's ``keras_version`` says which Keras wrote it, and its config is judged against that Keras's
building blocks. A SavedModel folder's graphs are checked operation by operation first
(savedmodel.py).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gradcam_desktop.core import archive
from gradcam_desktop.core.errors import ModelLoadError, UnsafeModelError
from gradcam_desktop.core.footprint import Footprint, available_memory, human, measure
from gradcam_desktop.core.scan import scan_config, strip_nested_compile

__all__ = ["CheckedModel", "check_model_file", "keras_path", "scan_config"]

MAX_FILE_BYTES = 2 * 1024**3          # larger files are not image classifiers we can show
MAX_ZIP_MEMBERS = 10_000              # a Keras 3 zip holds 3 files plus assets
MAX_ZIP_DIRECTORY_BYTES = 4 * 1024**2  # ~10,000 entries with long names; parsed in memory
MAX_ZIP_UNPACKED_BYTES = 4 * 1024**3  # zip-bomb guard on the declared sizes
MAX_OTHER_MEMBERS_BYTES = 256 * 1024**2  # config, metadata, assets: Keras unpacks them to disk
MAX_CONFIG_BYTES = 64 * 1024**2       # JSON configs of huge models are a few MB
MAX_WEIGHT_OBJECTS = 200_000          # HDF5 groups + datasets; ResNet50 has ~1,000
#: Loading holds the weights about three times over (variables, the file read into memory,
#: one array per variable while assigning): they may use this share of the free memory.
MEMORY_SHARE = 0.3
#: A weights file may hold optimizer slots next to the weights (Adam: 2 per weight, +1 with
#: EMA) and ~2 KB of HDF5 headers per dataset.
WEIGHTS_FILE_FACTOR, WEIGHTS_FILE_PER_VARIABLE, WEIGHTS_FILE_SLACK = 4.5, 64 * 1024, 16 * 1024**2
#: The config may declare at most this much more than the weights file's datasets hold.
DECLARED_SLACK = 16 * 1024**2
#: ...and at most this ratio over what the file really stores (HDF5 datasets can declare
#: shapes whose chunks were never written; Keras writes weights uncompressed).
STORED_RATIO, STORED_SLACK = 16, 64 * 1024**2
#: Bytes of an .h5 file beyond its datasets' data: the configs (read whole) and headers.
H5_UNEXPLAINED_BYTES = 2 * MAX_CONFIG_BYTES + 16 * 1024**2

KERAS_EXTENSIONS = (".keras",)
H5_EXTENSIONS = (".h5", ".hdf5")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WEIGHTS = "model.weights.h5"


@dataclass
class CheckedModel:
    """A model file that passed every check, and how Keras must be handed it."""

    path: Path
    kind: str                 # "keras", "h5" or "savedmodel" (a folder)
    config: Any               # the config Keras must build (nested compile configs dropped)
    runs_code: bool           # holds trusted Lambda code: load with safe_mode=False
    rewrite: bool             # Keras must read ``config`` from a copy, not the file's own
    footprint: Footprint | None  # None for trusted files with code (not measured)
    keras: int = 3            # the Keras that wrote it and opens it: 3 (keras) or 2 (tf_keras)
    loss: Any = None          # the loss it was compiled with, as its config says (only read, never built)


def check_model_file(path: str | os.PathLike, *, trust: bool = False) -> CheckedModel:
    """Raise ModelLoadError/UnsafeModelError unless ``path`` is a plain Keras model file."""
    p = Path(path)
    name = p.name or str(p)
    if p.name in ("saved_model.pb", "saved_model.pbtxt", "keras_metadata.pb"):
        p, name = p.parent, p.parent.name or name
    if p.is_dir():
        if (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists():
            return _check_savedmodel(p, name, trust=trust)
        raise ModelLoadError(f"{name} is a folder, not a model file; choose a .keras or .h5 file, "
                             "or a SavedModel folder.")
    if not p.exists():
        raise ModelLoadError(f"{p} does not exist.")
    suffix = p.suffix.lower()
    if suffix not in KERAS_EXTENSIONS + H5_EXTENSIONS:
        raise ModelLoadError(f"{name} is not a Keras model file; Grad-CAM Desktop opens "
                             ".keras (Keras 3) and .h5/.hdf5 (legacy Keras) models.")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None
    if size == 0:
        raise ModelLoadError(f"{name} is empty.")
    if size > MAX_FILE_BYTES:
        raise ModelLoadError(f"{name} is larger than {MAX_FILE_BYTES // 1024**3} GiB; "
                             "refusing to open it.")
    kind = "keras" if suffix in KERAS_EXTENSIONS else "h5"
    if kind == "keras":
        raw, extra, h5_summary = _read_keras_config(p, name), None, None
        keras = _keras_zip_version(p)
    else:
        raw, extra, h5_summary, keras = _read_h5_config(p, name, size)
    config = _parse_json(raw, name, "config.json" if kind == "keras" else "model_config")
    runs_code = scan_config(config, trust=trust, source=name, keras=keras)
    training = _parse_json(extra, name, "training_config") if extra else None
    if training is not None:  # legacy h5 training config: only deserialized with compile=True
        scan_config({"training_config": training}, trust=trust, source=name, keras=keras)
    # Keras' h5 loader decodes the config as plain UTF-8 text: with a BOM (or in UTF-16)
    # it needs a clean copy; config.json is read as bytes, like here.
    rewrite = strip_nested_compile(config) or (kind == "h5" and raw.lstrip()[:1] != b"{")
    # Building the config abstractly would already run trusted Lambda code, and code can
    # allocate whatever it likes anyway: files with trusted code skip the size checks.
    footprint = None if runs_code else measure(config, legacy=kind == "h5", safe_mode=True,
                                               name=name, keras_version=keras)
    if kind == "keras":
        summary, on_disk, unpacked = _keras_weights(p, name, footprint)
    else:
        assert h5_summary is not None  # read with the h5 config
        summary, on_disk, unpacked = h5_summary, size, 0
    if footprint is not None:
        _check_weights(name, footprint, summary, on_disk)
        _check_memory(footprint, unpacked, name)
    if kind == "keras":  # last: its work is bounded by the declared sizes checked above
        _check_members(p, name)
    compiled = config.get("compile_config") if isinstance(config, dict) else None
    return CheckedModel(p, kind, config, runs_code, rewrite, footprint, keras, _loss_of(compiled or training))


def _loss_of(compiled: Any) -> Any:
    """The "loss" entry of a compile or training config (plain JSON data), or None."""
    return compiled.get("loss") if isinstance(compiled, dict) else None


def _check_savedmodel(folder: Path, name: str, *, trust: bool) -> CheckedModel:
    """A SavedModel folder: its graphs' operations first (savedmodel.py), then its Keras metadata
    like any Keras 2 config, then its weights against the layers and this machine's memory."""
    from gradcam_desktop.core import savedmodel

    config, others, training, stored = savedmodel.check_folder(folder, name)
    runs_code = scan_config(config, trust=trust, source=name, keras=2)
    # Layers and metrics Keras 2 revives from their own records.
    runs_code |= scan_config(others, trust=trust, source=name, keras=2)
    if training is not None:
        scan_config({"training_config": training}, trust=trust, source=name, keras=2)
    footprint = None if runs_code else measure(config, legacy=True, safe_mode=True, name=name, keras_version=2)
    if footprint is not None:
        _check_weights(name, footprint, stored, stored.stored_bytes)
        _check_memory(footprint, 0, name)
    return CheckedModel(folder, "savedmodel", config, runs_code, False, footprint, 2, _loss_of(training))


def keras_major(version: Any) -> int:
    """2 or 3 from a ``keras_version`` string ("2.15.0", "2.2.4-tf", "3.12.0"); files without one
    predate Keras 3."""
    text = version.decode("utf-8", "replace") if isinstance(version, bytes) else str(version or "")
    head = text.strip().split(".", 1)[0]
    return 3 if head.isdigit() and int(head) >= 3 else 2


def _keras_zip_version(path: Path) -> int:
    """The Keras that wrote a .keras zip, from its metadata.json (Keras 2.13+ writes .keras too)."""
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("metadata.json")
            data = archive.read_member(zf, info, 64 * 1024)
        metadata = json.loads(data) if data else {}
    except (KeyError, ValueError, zipfile.BadZipFile, zlib.error, OSError, RuntimeError,
            NotImplementedError, EOFError):
        return 3  # no readable metadata: Keras 3 reads the file and says what is wrong
    return keras_major(metadata.get("keras_version", "3")) if isinstance(metadata, dict) else 3


@contextmanager
def keras_path(checked: CheckedModel) -> Iterator[Path]:
    """The path to hand ``keras.saving.load_model``: the file itself when Keras can read it
    as it is, else a private temporary copy (nested compile configs dropped, or a suffix in
    capitals, which Keras does not recognize)."""
    suffix = ".keras" if checked.kind == "keras" else checked.path.suffix.lower()
    if not checked.rewrite and checked.path.suffix == suffix:
        yield checked.path
        return
    folder = Path(tempfile.mkdtemp(prefix="gradcam-model-"))  # private: mode 0700
    target = folder / f"model{suffix}"
    try:
        try:
            if checked.kind == "keras":
                if checked.rewrite:
                    archive.copy_keras_zip(checked.path, target,
                                           json.dumps(checked.config).encode("utf-8"),
                                           limit=MAX_ZIP_UNPACKED_BYTES)
                else:
                    shutil.copyfile(checked.path, target)
            elif checked.rewrite:
                archive.copy_h5_with_config(checked.path, target, json.dumps(checked.config))
            else:
                shutil.copyfile(checked.path, target)
        except OSError as e:
            raise ModelLoadError(f"Cannot prepare {checked.path.name} for loading "
                                 f"({e.strerror or e}).") from None
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- sizes

def _check_memory(footprint: Footprint, unpacked: int, name: str) -> None:
    """Weights (plus a .keras weights file, which Keras reads into memory whole) must fit in
    a share of this machine's free memory, one image's activations in all of it."""
    budget = int(available_memory() * MEMORY_SHARE)
    need = footprint.weight_bytes + unpacked
    if need > budget:
        raise ModelLoadError(f"{name} needs about {human(need)} of memory to load (its "
                             f"weights); this computer has about {human(budget)} to spare. "
                             "Refusing to load it.")
    # Grad-CAM keeps only part of the activations alive, so only the impossible is refused.
    free = available_memory()
    if footprint.activation_bytes > free:
        raise ModelLoadError(f"{name} would need {human(footprint.activation_bytes)} to run on "
                             f"one image; this computer has {human(free)} free.")


def _check_weights(name: str, footprint: Footprint, summary: archive.WeightsSummary,
                   on_disk: int) -> None:
    """What the config builds must be what the weights file declares and really stores."""
    need = footprint.weight_bytes
    if need > summary.declared_bytes + DECLARED_SLACK:
        raise UnsafeModelError(f"Refused {name}: its layers declare {human(need)} of weights "
                               f"(largest {footprint.largest}) but its weights file holds only "
                               f"{human(summary.declared_bytes)}; config and weights do not "
                               "match.")
    stored = min(summary.stored_bytes, on_disk)
    if need > STORED_RATIO * stored + STORED_SLACK:
        raise UnsafeModelError(f"Refused {name}: it declares {human(need)} of weights but "
                               f"stores only {human(stored)} (a decompression bomb?).")


def _check_members(path: Path, name: str) -> None:
    """Every member's data must agree with its declared size (Keras reads members whole)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        for info in infos:
            problem = archive.member_problem(path, info)
            if problem:
                raise UnsafeModelError(f"Refused {name}: its file {info.filename!r} is "
                                       f"malformed: {problem} (zip bomb?).")
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        raise ModelLoadError(f"{name} is not a valid .keras file (corrupt or not a "
                             "zip).") from None
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None


def _weights_summary(source: Any, name: str,
                     damaged: str = "has a damaged weights file") -> archive.WeightsSummary:
    try:
        return archive.summarize_h5(source, max_objects=MAX_WEIGHT_OBJECTS)
    except ModelLoadError as e:
        raise UnsafeModelError(f"Refused {name}: {e}.") from None
    except (OSError, ValueError, KeyError, RuntimeError, TypeError):
        raise ModelLoadError(f"{name} {damaged}.") from None


def _keras_weights(path: Path, name: str,
                   footprint: Footprint | None) -> tuple[archive.WeightsSummary, int, int]:
    """Check the .keras members' declared sizes against what the layers need (when
    measured), then summarize the weights file: (summary, bytes stored, bytes unpacked)."""
    try:
        with zipfile.ZipFile(path) as zf:
            members = {info.filename: info for info in zf.infolist()}  # last one wins
            weights = members.get(_WEIGHTS)
            if weights is None:
                what = ("stores its weights as .npz, which Grad-CAM Desktop does not open"
                        if "model.weights.npz" in members else f"has no {_WEIGHTS} inside")
                raise ModelLoadError(f"{name} is not a usable .keras file (it {what}).")
            others = sum(i.file_size for n, i in members.items() if n != _WEIGHTS)
            if others > MAX_OTHER_MEMBERS_BYTES:
                raise UnsafeModelError(f"Refused {name}: its files other than the weights "
                                       f"unpack to {human(others)} (more than "
                                       f"{human(MAX_OTHER_MEMBERS_BYTES)}).")
            cap = MAX_ZIP_UNPACKED_BYTES if footprint is None else \
                int(WEIGHTS_FILE_FACTOR * footprint.weight_bytes) + WEIGHTS_FILE_SLACK \
                + WEIGHTS_FILE_PER_VARIABLE * footprint.variables
            if footprint is not None and weights.file_size > cap:
                raise UnsafeModelError(f"Refused {name}: its weights file unpacks to "
                                       f"{human(weights.file_size)}, far more than the "
                                       f"{human(footprint.weight_bytes)} its layers need "
                                       "(zip bomb?).")
            with archive.open_member(path, zf, weights) as fh:
                summary = _weights_summary(fh, name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError,
            NotImplementedError, RuntimeError):
        raise ModelLoadError(f"{name} is not a valid .keras file (corrupt or not a "
                             "zip).") from None
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None
    return summary, weights.compress_size, weights.file_size


# ---------------------------------------------------------------- file readers

def _too_big(name: str, what: str) -> ModelLoadError:
    return ModelLoadError(f"{name} has a {what} larger than {MAX_CONFIG_BYTES // 1024**2} MB; "
                          "refusing to read it.")


def _read_keras_config(path: Path, name: str) -> bytes:
    """Return config.json of a .keras zip after structural checks (no extraction)."""
    corrupt = f"{name} is not a valid .keras file (corrupt or not a zip)."
    try:
        with open(path, "rb") as fh:  # before ZipFile parses (and holds) the whole directory
            directory = archive.zip_directory(fh)
        if directory is None:
            raise ModelLoadError(corrupt)
        if directory.entries > MAX_ZIP_MEMBERS:
            raise UnsafeModelError(f"Refused {name}: it declares {directory.entries} files "
                                   f"inside (more than {MAX_ZIP_MEMBERS}); not a normal "
                                   ".keras file (zip bomb?).")
        if directory.directory_bytes > MAX_ZIP_DIRECTORY_BYTES:
            raise UnsafeModelError(f"Refused {name}: its list of files takes "
                                   f"{human(directory.directory_bytes)} (more than "
                                   f"{human(MAX_ZIP_DIRECTORY_BYTES)}); not a normal .keras "
                                   "file (zip bomb?).")
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_MEMBERS:
                raise UnsafeModelError(f"Refused {name}: it holds {len(infos)} files inside "
                                       f"(more than {MAX_ZIP_MEMBERS}); not a normal .keras "
                                       "file (zip bomb?).")
            unpacked = sum(info.file_size for info in infos)
            if unpacked > MAX_ZIP_UNPACKED_BYTES:
                raise UnsafeModelError(f"Refused {name}: it would unpack to more than "
                                       f"{human(MAX_ZIP_UNPACKED_BYTES)} (zip bomb?).")
            for info in infos:
                member = PurePosixPath(info.filename.replace("\\", "/"))
                if member.is_absolute() or ".." in member.parts or ":" in info.filename:
                    raise UnsafeModelError(f"Refused {name}: it contains a file with a "
                                           f"suspicious path ({info.filename!r}).")
            try:
                info = zf.getinfo("config.json")
            except KeyError:
                raise ModelLoadError(f"{name} is not a valid .keras file (no config.json "
                                     "inside).") from None
            data = archive.read_member(zf, info, MAX_CONFIG_BYTES)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError,
            NotImplementedError, RuntimeError):
        raise ModelLoadError(corrupt) from None
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None
    if data is None:
        raise _too_big(name, "config.json")
    return data


def _has_hdf5_signature(path: Path, size: int) -> bool:
    # The superblock sits at 0 or, after a user block, at 512, 1024, 2048, ...
    offsets = [0] + [512 << k for k in range(0, 22) if (512 << k) + 8 <= size]
    with open(path, "rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            if fh.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def _read_h5_config(path: Path, name: str,
                    size: int) -> tuple[bytes, bytes | None, archive.WeightsSummary, int]:
    """Return (model_config, training_config or None, weights summary, Keras major version)
    from a legacy Keras HDF5 file."""
    try:
        is_hdf5 = _has_hdf5_signature(path, size)
    except OSError as e:
        raise ModelLoadError(f"{name} cannot be read ({e.strerror or e}).") from None
    if not is_hdf5:
        raise ModelLoadError(f"{name} is not an HDF5 file (a .h5 model must be one).")
    import h5py  # a Keras dependency; parses attributes only, no Keras code runs

    summary = _weights_summary(path, name, "is a damaged HDF5 file and cannot be read")
    # A text attribute's length is not known before it is read whole; it can only be as long
    # as the bytes of the file that are not weights.
    unexplained = size - summary.stored_bytes
    if unexplained > H5_UNEXPLAINED_BYTES + WEIGHTS_FILE_PER_VARIABLE * summary.objects:
        raise UnsafeModelError(f"Refused {name}: {human(unexplained)} of it are neither weights "
                               "nor a model config of a sane size.")
    try:
        with h5py.File(path, "r") as f:
            model_config = archive.read_h5_attribute(f, "model_config", MAX_CONFIG_BYTES)
            training_config = archive.read_h5_attribute(f, "training_config", MAX_CONFIG_BYTES)
            version = archive.read_h5_attribute(f, "keras_version", 1024)
            # Why there is no config to read decides the advice: only a weights file is helped by
            # "save the whole model"; a config that is not text, or no Keras content at all, is not.
            has_config = "model_config" in f.attrs
            has_weights = "layer_names" in f.attrs or {"layers", "vars"} <= set(f.keys())
    except ModelLoadError as e:
        raise ModelLoadError(f"{name} is not a usable model file ({e}); Grad-CAM Desktop opens the .keras "
                             "and .h5 files that Keras' model.save() writes.") from None
    except (OSError, ValueError, KeyError, RuntimeError, TypeError):
        raise ModelLoadError(f"{name} is a damaged HDF5 file and cannot be read.") from None
    if model_config is None and has_config:
        raise ModelLoadError(f"{name} is not a usable model file: its model_config is not the JSON text Keras "
                             "writes there (damaged, or not written by Keras); open the .keras or .h5 file that "
                             "model.save() wrote.")
    if model_config is None and not has_weights:
        raise ModelLoadError(f"{name} is an HDF5 file but not a Keras model (no model config, no Keras weights); "
                             "Grad-CAM Desktop opens the .keras and .h5 files that Keras' model.save() writes.")
    if model_config is None:
        raise ModelLoadError(f"{name} holds weights only, no model; save the whole model "
                             "(model.save('model.keras')) and open that file.")
    return _attr_bytes(model_config, name), (
        None if training_config is None else _attr_bytes(training_config, name)), summary, \
        keras_major(version)


def _attr_bytes(value: bytes | str, name: str) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_big(name, "model config")
    return data


def _parse_json(data: bytes, name: str, what: str) -> Any:
    # Raw check first: catches the switch even where JSON parsing would choke.
    if b"enable_unsafe_deserialization" in data:
        scan_config("enable_unsafe_deserialization", source=name)
    try:
        # Bytes, as Keras reads config.json: json detects UTF-8 (with or without a BOM),
        # UTF-16 and UTF-32 the same way for both of us.
        config = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelLoadError(f"{name} is not a valid Keras model ({what} is not valid "
                             "JSON).") from None
    if not isinstance(config, (dict, list)):
        raise ModelLoadError(f"{name} is not a valid Keras model ({what} is not a model "
                             "config).")
    return config
