"""Atomic file writes: a result file is either the complete new content or untouched.

Each write goes to a temporary file in the destination folder (so ``os.replace`` is a
rename on one file system, atomic on POSIX and Windows), is flushed and fsync'ed, then
replaces the target. On any failure the temporary file is removed and an
:class:`OutputError` with one plain line is raised. Folders are never created here:
making the output folder of a batch run is the caller's job.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
from pathlib import Path

import cv2
import numpy as np

from gradcam_desktop.core.errors import OutputError

__all__ = ["atomic_write_bytes", "atomic_write_png", "atomic_write_npy"]

# errno → the plain reason shown to users; anything else falls back to strerror.
_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "the disk is full",
    errno.EROFS: "the disk is read-only",
    errno.ENOENT: "the folder does not exist",
    errno.ENOTDIR: "the folder does not exist",
    errno.EISDIR: "a folder with that name exists",
    errno.ENAMETOOLONG: "the name is too long",
}
if hasattr(errno, "EDQUOT"):  # not defined on every platform
    _REASONS[errno.EDQUOT] = "the disk quota is exceeded"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno in _REASONS:
            return _REASONS[exc.errno]
        if exc.strerror:
            return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def _fail(path: Path, reason: str) -> OutputError:
    return OutputError(f"Cannot write {path}: {reason}. Choose another folder.")


def _open_temp(path: Path) -> tuple[str, int]:
    """Create an exclusive temp file next to ``path``; mode 0o666 minus umask like a normal file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        # Hidden name so folder watchers and batch globbing ignore half-written files.
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(path.parent))


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (POSIX only; best effort, the data is already safe)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; raise :class:`OutputError` on any failure."""
    path = Path(path)
    folder = path.parent
    # Check the folder first so the message says what is wrong instead of a bare ENOENT.
    if not folder.exists():
        raise _fail(path, f"the folder {folder} does not exist")
    if not folder.is_dir():
        raise _fail(path, f"{folder} is not a folder")
    if path.is_dir():
        raise _fail(path, "a folder with that name exists")

    tmp: str | None = None
    try:
        tmp, fd = _open_temp(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # Keep the permissions of a file we replace (e.g. a shared group-writable result).
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except OSError:
            pass
        os.replace(tmp, path)
        tmp = None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one user-readable line
        raise _fail(path, _reason(exc)) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync_dir(folder)


def atomic_write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Encode an HxWx3 RGB (or HxW grayscale) uint8 array as PNG and write it atomically."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"atomic_write_png needs uint8 pixels, got {rgb.dtype}")
    if rgb.ndim == 3 and rgb.shape[2] == 1:
        rgb = rgb[:, :, 0]
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # OpenCV encodes BGR
    elif rgb.ndim == 2:
        pixels = rgb
    else:
        raise ValueError(f"atomic_write_png needs HxWx3 or HxW pixels, got shape {rgb.shape}")
    if pixels.size == 0:
        raise ValueError("atomic_write_png got an empty image")
    ok, buf = cv2.imencode(".png", pixels)
    if not ok:
        raise _fail(Path(path), "the image could not be encoded as PNG")
    atomic_write_bytes(path, buf.tobytes())


def atomic_write_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save ``array`` in .npy format atomically (no pickled objects, so it loads safely)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def unique_stems(names: list[str | os.PathLike[str]]) -> list[str]:
    """Output file stems for a batch; a name seen before (a/x.png, b/x.png) gets _2, _3 …

    Compared case-insensitively, so outputs do not overwrite each other on Windows and macOS.
    """
    seen: dict[str, int] = {}
    stems = []
    for name in names:
        stem = Path(name).stem or "image"
        count = seen.get(stem.lower(), 0) + 1
        seen[stem.lower()] = count
        stems.append(stem if count == 1 else f"{stem}_{count}")
    return stems
