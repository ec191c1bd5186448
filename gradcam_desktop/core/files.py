"""Atomic file writes: a result file is either the complete new content or untouched.

Each write goes to a temporary file in the destination folder (so ``os.replace`` is a
rename on one file system, atomic on POSIX and Windows), is flushed and fsync'ed, then
replaces the target. On any failure the temporary file is removed and an
:class:`OutputError` with one plain line is raised. Folders are never created here:
making the output folder of a batch run is the caller's job. ``atomic_write_all`` writes the
files of one picture (overlay, raw map, sidecar) as a unit: all of them, or none.

Every CSV the app writes (results.csv, triage.csv, confusion.csv, the window's exports) goes
through ``atomic_write_csv``: streamed into the temporary file row by row, every text cell a
spreadsheet would run as a formula neutralised (``spreadsheet_safe``), and a row with a line
break in any cell quoted whole, so that no name or path ever splits a line.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import itertools
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from gradcam_desktop.core.errors import OutputError

__all__ = ["atomic_writer", "atomic_write_all", "atomic_write_bytes", "atomic_write_csv", "atomic_write_png",
           "atomic_write_npy", "npy_bytes", "png_bytes", "spreadsheet_safe"]

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


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` when the ``with`` block ends; ``path`` is untouched otherwise.

    On any failure the temporary file is removed. Failures of the file or the disk (OSError)
    become :class:`OutputError` (one line); any other exception from the block passes through
    unchanged (a bug is not a full disk).
    """
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
    raised: BaseException | None = None  # what the block itself raised
    try:
        tmp, fd = _open_temp(path)
        with os.fdopen(fd, "wb") as fh:
            try:
                yield fh
            except BaseException as exc:
                raised = exc
                raise
            fh.flush()
            os.fsync(fh.fileno())
        try:
            # Keep the permissions of a file we replace (e.g. a shared group-writable result).
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except OSError:
            pass
        os.replace(tmp, path)
        tmp = None
    except Exception as exc:  # noqa: BLE001 - every failure to write becomes one user-readable line
        if exc is raised and not isinstance(exc, OSError):
            raise
        raise _fail(path, _reason(exc)) from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; raise :class:`OutputError` on any failure."""
    with atomic_writer(path) as fh:
        fh.write(data)


#: A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets
#: (OWASP, "CSV Injection"): ``=1+1``, ``@SUM(…)``, ``-2+3+cmd|' /C calc'!A0``, a tab or CR first.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: A signed decimal number: what a numeric column holds (``-0.5``, ``-1.2e-05``). A spreadsheet
#: reads it as a number, never as a formula, so it stays as it is and stays a number.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
#: Everything ``str.splitlines`` splits on: a cell holding one is quoted, with all its row.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def spreadsheet_safe(value: object) -> object:
    """``value`` as a CSV cell that no spreadsheet runs: text starting with ``= + - @``, a tab or
    a carriage return gets a leading ``'`` (then it is shown as the text it is); plain numbers,
    in text or not, and every other value are returned unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def atomic_write_csv(path: str | os.PathLike[str], header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Write a UTF-8 CSV (``header``, then ``rows``) atomically, streamed: the one CSV writer of the app.

    Every cell goes through ``spreadsheet_safe``. A row with a line break of any kind in a cell
    (``\\n``, ``\\r``, U+2028 …) is written with every cell quoted, so that it stays one record
    for any reader. Text that cannot be UTF-8 (a file name of undecodable bytes) is written
    with backslash escapes rather than failing the whole table.
    """
    with atomic_writer(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", newline="")
        plain = csv.writer(text, lineterminator="\n")
        quoted = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
        for row in itertools.chain([header], rows):
            cells = [spreadsheet_safe(cell) for cell in row]
            broken = any(isinstance(cell, str) and not _LINE_BREAKS.isdisjoint(cell) for cell in cells)
            (quoted if broken else plain).writerow(cells)
        text.flush()
        text.detach()  # the file itself is atomic_writer's to close


def png_bytes(path: str | os.PathLike[str], rgb: np.ndarray) -> bytes:
    """An HxWx3 RGB (or HxW grayscale) uint8 array encoded as PNG (``path``: named in the error)."""
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
    return buf.tobytes()


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` in .npy format (no pickled objects, so it loads safely)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def atomic_write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Encode an HxWx3 RGB (or HxW grayscale) uint8 array as PNG and write it atomically."""
    atomic_write_bytes(path, png_bytes(path, rgb))


def atomic_write_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save ``array`` in .npy format atomically (no pickled objects, so it loads safely)."""
    atomic_write_bytes(path, npy_bytes(array))


def atomic_write_all(contents: Sequence[tuple[str | os.PathLike[str], bytes]]) -> None:
    """Write several files as one unit (a picture's overlay, raw map and sidecar): all of them, or none.

    Every file is first written whole to a temporary file beside its target, where a full disk or
    a quota shows; only then are they renamed into place, in order. Should a rename fail, the files
    already renamed are taken back: the version they replaced is restored (kept by a hard link
    meanwhile; on a file system without hard links, the new file is removed). On any failure
    :class:`OutputError` names the file, and the targets are as they were.
    """
    targets = [(Path(path), data) for path, data in contents]
    for path, _ in targets:
        _check_target(path)
    staged: list[tuple[Path, str]] = []
    try:
        for path, data in targets:
            staged.append((path, _stage(path, data)))
        _commit(staged)
    finally:
        for _, tmp in staged:  # those renamed into place are gone already
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    for folder in {path.parent for path, _ in targets}:
        _fsync_dir(folder)


def _check_target(path: Path) -> None:
    """The checks ``atomic_writer`` makes first, so that the message says what is wrong."""
    if not path.parent.exists():
        raise _fail(path, f"the folder {path.parent} does not exist")
    if not path.parent.is_dir():
        raise _fail(path, f"{path.parent} is not a folder")
    if path.is_dir():
        raise _fail(path, "a folder with that name exists")


def _stage(path: Path, data: bytes) -> str:
    """``data`` in a new temporary file beside ``path``, flushed to the disk; its name."""
    tmp: str | None = None
    try:
        tmp, fd = _open_temp(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(OSError):  # keep the permissions of a file we replace
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        return tmp
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise _fail(path, _reason(exc)) from exc


def _commit(staged: list[tuple[Path, str]]) -> None:
    """Rename the staged files into place; on a failure, take back those already renamed."""
    done: list[tuple[Path, str | None]] = []  # (target, hard link to the version it replaced)
    path = staged[0][0] if staged else Path()
    try:
        for path, tmp in staged:
            old = _keep_old(path)
            try:
                os.replace(tmp, path)
            except OSError:
                if old is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(old)
                raise
            done.append((path, old))
    except OSError as exc:
        for target, old in reversed(done):
            with contextlib.suppress(OSError):
                if old is not None:
                    os.replace(old, target)
                else:
                    os.unlink(target)
        raise _fail(path, _reason(exc)) from exc
    for _, old in done:
        if old is not None:
            with contextlib.suppress(OSError):
                os.unlink(old)


def _keep_old(path: Path) -> str | None:
    """A hidden hard link to the file at ``path`` (None: no file there, or no hard links here)."""
    if not path.is_file():
        return None
    for _ in range(100):
        old = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.old"))
        try:
            os.link(path, old)
            return old
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


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
