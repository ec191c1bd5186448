"""Labelled pictures for folder triage: which class each picture truly belongs to.

Two layouts are read:

* a folder whose subfolders name the classes — by class name (case-insensitive, ``_`` = space)
  or by class index — each holding that class's pictures (not searched deeper);
* a CSV file of ``path,label`` rows (a header row is optional; relative paths are relative to
  the CSV's folder; a label is a class name or index as above).

A label that names no class of the model is never guessed: its pictures are skipped and ONE
warning line lists the unknown names and the model's classes. Files that cannot be read are not
checked here (that would decode every picture twice): triage turns them into error rows. A class
folder that cannot be listed (no permission, a link to a missing folder) is one ``LabelledPicture``
with ``error`` set: triage makes it an error row, so the summary counts it instead of leaving out
its pictures unsaid.

Both layouts are read in one pass, as a stream: a CSV line by line (the csv module on a file
opened with ``newline=""``: only ``\n`` and ``\r`` end a line, never U+2028 inside a path), at
most ``MAX_LINE`` characters of a line, and at most ``MAX_PICTURES`` pictures — the next one is
refused with one line before the rest of the file is read. Triage needs every label (its length
is the progress bar's total; the window keeps every row in its table), so the list is kept, and
bounded by that limit rather than by the length of the file.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .class_names import LIST_CLASSES_UP_TO  # class names a warning lists in full
from .errors import LabelError
from .images import IMAGE_EXTENSIONS

__all__ = ["MAX_LINE", "MAX_PICTURES", "LabelledPicture", "LabelSet", "read_labels", "normalise_label",
           "shown_path"]

#: First-row words that make it a header rather than a picture (compared case-insensitively).
HEADER_WORDS = frozenset({"path", "image", "file", "filename", "filepath", "picture"})
#: Pictures one triage reads at most (rows of a CSV, pictures in class folders, known label or not).
#: Triage keeps every label and — in the CLI's tables and the window's table — every row: about
#: 0.5 kB a picture, so 0.5 GB here; and a million pictures are hours of predictions on a CPU.
#: Above it the source is refused when its 1,000,001st picture is seen, before reading the rest.
MAX_PICTURES = 1_000_000
#: Characters a line of a labels CSV may hold: a path is at most 4,096 bytes on Linux and 32,767
#: characters on Windows. A line is read at most this far, so a file without line breaks is
#: refused after 64 K characters instead of being read into memory whole.
MAX_LINE = 65_536
#: Unknown labels a warning names (the rest are counted): one line, whatever the CSV holds.
LIST_UNKNOWN_UP_TO = 20


@dataclass(frozen=True, slots=True)  # slots: a million of these take 40 MB less (64 MB, not 104)
class LabelledPicture:
    """One picture and the index of its true class. ``error`` set: a class folder that could not be
    listed — triage makes it an error row, with this message, without trying to decode it."""

    path: str
    true_index: int
    error: str = ""


@dataclass
class LabelSet:
    """The pictures whose label names a class, the labels that did not, and the one warning about them."""

    pictures: list[LabelledPicture] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # unknown label -> pictures skipped
    warning: str | None = None

    @property
    def unreadable(self) -> list[LabelledPicture]:
        """The class folders that could not be listed (their ``error`` says why): error rows in triage."""
        return [picture for picture in self.pictures if picture.error]

    @property
    def skipped_count(self) -> int:
        """Pictures left out because their label names no class."""
        return sum(self.skipped.values())


def shown_path(text: str, limit: int = 200) -> str:
    """A path or label fit for a one-line message: line breaks and other control characters
    escaped, the middle of a very long one elided."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                       for c in text)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-(limit // 2):]}"


def normalise_label(text: str) -> str:
    """How labels and class names are compared: case-insensitive, ``_`` = space, runs of spaces as one."""
    return " ".join(str(text).replace("_", " ").split()).casefold()


class _Resolver:
    """Label text → class index (a name first, then an index), or None."""

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)
        self._by_name: dict[str, int] = {}
        for index, name in enumerate(self.class_names):
            self._by_name.setdefault(normalise_label(name), index)  # a duplicated name: its first index

    def __call__(self, label: str) -> int | None:
        key = normalise_label(label)
        if key in self._by_name:
            return self._by_name[key]
        if key.isdigit() and int(key) < len(self.class_names):
            return int(key)
        return None


def read_labels(source: str | os.PathLike[str], class_names: list[str], *, limit: int | None = None) -> LabelSet:
    """The labelled pictures of a folder of class subfolders or of a ``path,label`` CSV.

    Raises :class:`LabelError` (one line) when the source is neither, when it lists more than
    ``limit`` pictures (default ``MAX_PICTURES``), or when no picture has a label that names a
    class and can be read.
    """
    path = Path(source)
    limit = MAX_PICTURES if limit is None else int(limit)
    if not class_names:
        raise LabelError("This model has no class names to match labels against.")
    resolve = _Resolver(class_names)
    if path.is_dir():
        found, unknown = _from_folder(path, resolve, limit)
        kind = "subfolders"
    elif path.is_file():
        found, unknown = _from_csv(path, resolve, limit)
        kind = "labels"
    else:
        raise LabelError(f"{shown_path(str(path))} not found: give a folder with one subfolder per class, "
                         "or a CSV of path,label.")
    labels = LabelSet(pictures=found, skipped=dict(unknown))
    if unknown:
        labels.warning = _warning(unknown, class_names, kind)
    if not any(not picture.error for picture in found):
        reason = (found[0].error if found else labels.warning) or (
            "It has no subfolders of pictures (one per class)." if path.is_dir() else "It has no rows.")
        raise LabelError(f"No labelled pictures in {shown_path(str(path))}. {reason}")
    return labels


def _too_many(source: Path, limit: int) -> LabelError:
    return LabelError(f"{shown_path(str(source))} lists more than {limit:,} pictures, more than one triage reads: "
                      f"split them into parts of at most {limit:,} and triage each part.")


def _reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()


def _from_folder(folder: Path, resolve: _Resolver, limit: int) -> tuple[list[LabelledPicture], Counter]:
    try:
        with os.scandir(folder) as entries:
            # A link to a missing folder is a class folder too (a drive not mounted): listed, it fails.
            subfolders = [Path(entry.path) for entry in entries if not entry.name.startswith(".")
                          and (entry.is_dir() or (entry.is_symlink() and not os.path.exists(entry.path)))]
    except OSError as error:
        raise LabelError(f"{shown_path(str(folder))} cannot be read: {_reason(error)}. "
                         "Check that the folder can be opened, then try again.") from None
    subfolders.sort(key=lambda p: (p.name.lower(), p.name))
    found: list[LabelledPicture] = []
    unknown: Counter = Counter()
    listed = 0
    for sub in subfolders:
        index = resolve(sub.name)
        try:
            names = _picture_names(sub, limit - listed)
        except OSError as error:
            if index is not None:  # a folder that names no class would be skipped whatever it holds
                found.append(LabelledPicture(str(sub), index, _unreadable_folder(sub, error)))
            continue
        except OverflowError:
            raise _too_many(folder, limit) from None
        listed += len(names)
        if not names:
            continue  # an empty subfolder says nothing about any picture
        if index is None:
            unknown[sub.name] += len(names)
        else:
            base = str(sub)
            found += [LabelledPicture(os.path.join(base, name), index) for name in names]
    return found, unknown


def _picture_names(folder: Path, room: int) -> list[str]:
    """The picture files of ``folder`` by name (not hidden, an image extension), sorted as images.find_images
    sorts them; OverflowError past ``room`` names, OSError when the folder cannot be listed."""
    names: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            if entry.is_file():
                names.append(name)
                if len(names) > room:
                    raise OverflowError
    names.sort(key=lambda name: (name.lower(), name))
    return names


def _unreadable_folder(folder: Path, error: OSError) -> str:
    reason = _reason(error)
    if folder.is_symlink() and not folder.exists():
        reason = f"it links to {shown_path(os.readlink(folder))}, which does not exist"
    return (f"Class folder {shown_path(str(folder))} cannot be read ({reason}): its pictures were not checked. "
            "Make it readable, then triage again.")


def _lines(handle, table: Path) -> Iterator[str]:
    """The lines of ``handle`` (a file opened with newline=""), each read at most ``MAX_LINE`` characters far."""
    number = 0
    while line := handle.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE and not line.endswith(("\n", "\r")):
            raise LabelError(f"{shown_path(str(table))}, line {number} is longer than {MAX_LINE:,} characters: "
                             "give a CSV of path,label, one picture a line.")
        yield line


def _from_csv(table: Path, resolve: _Resolver, limit: int) -> tuple[list[LabelledPicture], Counter]:
    shown = shown_path(str(table))
    try:
        handle = open(table, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below; Excel writes a BOM
    except OSError as error:
        raise LabelError(f"{shown} cannot be read: {_reason(error)}. Check that the file can be opened, "
                         "then try again.") from None
    base = table.parent
    folder = str(base)
    found: list[LabelledPicture] = []
    unknown: Counter = Counter()
    first = True
    listed = 0  # rows with a label, known or not
    reader = csv.reader(_lines(handle, table))
    try:
        with handle:
            for row in reader:
                cells = [cell.strip() for cell in row]
                if not any(cells):
                    continue
                if first:
                    first = False
                    if cells[0].casefold() in HEADER_WORDS and not _is_file(base / cells[0]):
                        continue
                if len(cells) < 2 or not cells[0] or not cells[1]:
                    raise LabelError(f"{shown}, line {reader.line_num}: expected path,label, got "
                                     f"'{shown_path(','.join(row), 80)}'. Give one picture a line: its path, "
                                     "a comma, its class.")
                listed += 1
                if listed > limit:
                    raise _too_many(table, limit)
                index = resolve(cells[1])
                if index is None:
                    unknown[cells[1]] += 1
                else:  # a path no file system takes (a NUL, too long) is triage's error row, like a missing file
                    found.append(LabelledPicture(_beside(folder, cells[0]), index))
    except UnicodeDecodeError:
        raise LabelError(f"{shown} is not UTF-8 text (from about line {reader.line_num + 1}): save it as "
                         "a UTF-8 CSV of path,label.") from None
    except csv.Error as error:
        raise LabelError(f"{shown}, line {reader.line_num}: {error}. Give a CSV of path,label.") from None
    except OSError as error:
        raise LabelError(f"{shown} cannot be read: {_reason(error)}. Check that the file can be opened, "
                         "then try again.") from None
    return found, unknown


def _beside(folder: str, path: str) -> str:
    """``path`` as written, relative to ``folder`` (the CSV's) unless absolute.

    os.path rather than pathlib: a Path per row was two thirds of the time of a million rows.
    """
    if os.altsep:
        path = path.replace(os.altsep, os.sep)
    return path if folder == "." or os.path.isabs(path) else os.path.join(folder, path)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a NUL in the name, a name too long
        return False


def _warning(unknown: Counter, class_names: list[str], kind: str) -> str:
    count = sum(unknown.values())
    listed = sorted(unknown.items(), key=lambda item: item[0].lower())
    names = ", ".join(f"'{shown_path(name, 80)}' ({n})" for name, n in listed[:LIST_UNKNOWN_UP_TO])
    if len(listed) > LIST_UNKNOWN_UP_TO:
        names += f" and {len(listed) - LIST_UNKNOWN_UP_TO:,} more names"
    if len(class_names) <= LIST_CLASSES_UP_TO:
        classes = f"This model's classes: {', '.join(class_names)} (or their indices 0–{len(class_names) - 1})."
    else:
        shown = ", ".join(class_names[:LIST_CLASSES_UP_TO])
        classes = (f"This model has {len(class_names)} classes ({shown}, …); "
                   f"indices 0–{len(class_names) - 1} work too.")
    return (f"Skipped {count} picture{'s' if count != 1 else ''} whose {kind} name no class of this model: "
            f"{names}. {classes}")
