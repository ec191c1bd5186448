"""Read the containers of model files (.keras zips, HDF5) without trusting what they declare.

Nothing here reads more than it has first bounded: the zip directory size comes from the
end-of-central-directory record before ``zipfile`` parses the directory, members are read
with a byte limit, HDF5 weights are summarized from dataset headers (shapes, stored sizes)
without reading the data. Limits are arguments: the policy lives in safety.py.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gradcam_desktop.core.errors import ModelLoadError

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the zip local file header (APPNOTE 4.3.7)
_LOCAL_SIGNATURE = b"PK\x03\x04"
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class ZipDirectory:
    """What the end-of-central-directory record declares (zip64 values when present)."""

    entries: int
    directory_bytes: int


def zip_directory(fh: IO[bytes]) -> ZipDirectory | None:
    """The declared entry count and central-directory size, or None if there is no record.

    Uses the very routine ``zipfile.ZipFile`` starts with (it reads only the file's tail),
    so this check and the later parse cannot disagree about which record counts.
    """
    # Private, but unchanged since Python 2.6; a test pins it.
    end_record = zipfile._EndRecData  # type: ignore[attr-defined]  # noqa: SLF001
    endrec = end_record(fh)
    if not endrec:
        return None
    entries = zipfile._ECD_ENTRIES_TOTAL  # type: ignore[attr-defined]  # noqa: SLF001
    size = zipfile._ECD_SIZE  # type: ignore[attr-defined]  # noqa: SLF001
    return ZipDirectory(int(endrec[entries]), int(endrec[size]))


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes | None:
    """The member's bytes, or None when it holds more than ``limit`` (read stops there).

    Read in small pieces: ``zipfile`` inflates as much as one read asks for before it cuts
    the result to the declared size, so one big read lets a lying member inflate that far.
    """
    if info.file_size > limit:
        return None
    parts: list[bytes] = []
    total = 0
    with zf.open(info) as fh:
        while total <= limit and (part := fh.read(min(_COPY_CHUNK, limit + 1 - total))):
            parts.append(part)
            total += len(part)
    return None if total > limit else b"".join(parts)


def member_problem(path: Path, info: zipfile.ZipInfo) -> str | None:
    """Why a member's stored data disagrees with its declared size, or None if it agrees.

    ``zipfile`` trusts the declared sizes, and a single ``read()`` (which Keras does) reads
    all the stored data and inflates it all before cutting it to the declared size: a stored
    member must hold exactly its size, a deflated one must not inflate beyond it. Checking
    that inflates the member in 1 MB steps: bounded memory, time of the declared size.
    """
    if info.compress_type == zipfile.ZIP_STORED:
        return None if info.compress_size == info.file_size else "its stored size is not its size"
    if info.compress_type != zipfile.ZIP_DEFLATED:
        return "it uses a compression Keras does not write"
    if info.compress_size > info.file_size + info.file_size // 100 + 1024:  # deflate adds <1 %
        return "its compressed data is larger than what it unpacks to"
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    left, out = info.compress_size, 0
    with open(path, "rb") as fh:
        fh.seek(_data_offset(fh, info))
        while not inflater.eof:
            data = inflater.unconsumed_tail
            if not data:
                data = fh.read(min(_COPY_CHUNK, left)) if left > 0 else b""
                if not data:
                    break
                left -= len(data)
            out += len(inflater.decompress(data, _COPY_CHUNK))  # never more than a chunk
            if out > info.file_size:
                return f"it inflates to more than the {info.file_size} bytes it declares"
    return None


def _data_offset(fh: IO[bytes], info: zipfile.ZipInfo) -> int:
    """Where a member's data starts: after its local header, whose lengths can differ from
    the central directory's."""
    fh.seek(info.header_offset)
    header = fh.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise zipfile.BadZipFile("bad local file header")
    fields = _LOCAL_HEADER.unpack(header)
    return info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1]


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes at ``start`` of a file: a stored zip member."""

    def __init__(self, path: Path, start: int, size: int):
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._start, self._size, self._pos = start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._pos))
        if count == 0:
            return 0
        self._fh.seek(self._start + self._pos)
        got = self._fh.readinto(view[:count]) or 0
        self._pos += got
        return got

    def close(self) -> None:
        self._fh.close()
        super().close()


def open_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    """A seekable reader of one member: a window on the file when stored, else zipfile's.

    h5py seeks back and forth; ``zipfile`` emulates a backwards seek by reading again from
    the start, so a stored member (what Keras writes) is read in place instead.
    """
    if info.compress_type != zipfile.ZIP_STORED:
        return zf.open(info)
    with open(path, "rb") as fh:
        start = _data_offset(fh, info)
    return io.BufferedReader(_Window(path, start, info.file_size))


@dataclass(frozen=True)
class WeightsSummary:
    """HDF5 datasets as declared: how many, bytes their shapes describe, bytes stored, and
    how many links (groups, datasets, ...) the file has."""

    datasets: int
    declared_bytes: int
    stored_bytes: int
    objects: int


def summarize_h5(source: str | os.PathLike | IO[bytes], *, max_objects: int) -> WeightsSummary:
    """Sum the datasets' declared and stored sizes from their headers (no data is read).

    Raises ModelLoadError when the file holds more than ``max_objects`` links, or data that
    lives in other files (external storage, virtual datasets, external links), which
    reading the weights would read: a model may not read files outside itself.
    """
    import h5py

    count = declared = stored = objects = 0
    outside: str | None = None
    with h5py.File(source, "r") as f:
        def visit_link(name: str, link: Any) -> bool | None:
            nonlocal objects, outside
            objects += 1
            if isinstance(link, h5py.ExternalLink):
                outside = f"'{name}' links to another file ({link.filename})"
            return True if objects > max_objects or outside else None  # True stops the walk

        def visit(name: str, obj: Any) -> bool | None:
            nonlocal count, declared, stored, outside
            if isinstance(obj, h5py.Dataset):
                if obj.external or obj.is_virtual:
                    outside = f"'{name}' keeps its data in other files"
                    return True
                count += 1
                size = 1
                for side in obj.shape or ():
                    size *= int(side)
                declared += size * obj.dtype.itemsize
                stored += obj.id.get_storage_size()
            return None

        f.visititems_links(visit_link)
        if objects <= max_objects and not outside:
            f.visititems(visit)
    if objects > max_objects:
        raise ModelLoadError(f"its weights file holds more than {max_objects} objects")
    if outside:
        raise ModelLoadError(f"its weights file reads data from outside the model: {outside}")
    return WeightsSummary(count, declared, stored, objects)


def read_h5_attribute(f: Any, name: str, limit: int) -> bytes | str | None:
    """One scalar string attribute, after checking its shape and fixed size against ``limit``.

    A variable-length string can only be as long as the file (bounded by the caller).
    """
    import h5py

    if name not in f.attrs:
        return None
    attr = h5py.h5a.open(f.id, name.encode())
    if attr.shape not in ((), (1,)):
        raise ModelLoadError(f"its '{name}' is an array, not a model config")
    if attr.dtype.kind in "SU" and attr.dtype.itemsize > limit:  # fixed-length string
        raise ModelLoadError(f"its '{name}' is larger than {limit // 1024**2} MB")
    value = f.attrs[name]
    if getattr(value, "shape", ()) == (1,):
        value = value[0]
    if isinstance(value, (bytes, str)):
        return value
    return bytes(value) if hasattr(value, "tobytes") and value.dtype.kind == "S" else None


def copy_keras_zip(src: Path, dest: Path, config_json: bytes, *, limit: int) -> None:
    """Write ``dest``: the members of ``src`` with config.json replaced, stored uncompressed.

    Every member is copied in chunks and stops at its declared size (``limit`` in total).
    """
    written = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        last = {info.filename: info for info in zin.infolist()}  # what a lookup by name gets
        for info in last.values():
            if info.filename == "config.json":
                zout.writestr("config.json", config_json)
                continue
            target = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            with zin.open(info) as fin, zout.open(target, "w", force_zip64=True) as fout:
                while chunk := fin.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > limit:
                        raise ModelLoadError("it unpacks to more than it declares")
                    fout.write(chunk)


def copy_h5_with_config(src: Path, dest: Path, config_json: str) -> None:
    """Copy an HDF5 model file and replace its ``model_config`` attribute."""
    import h5py

    shutil.copyfile(src, dest)
    with h5py.File(dest, "r+") as f:
        del f.attrs["model_config"]
        f.attrs["model_config"] = config_json
