"""Labelled pictures for folder triage: which class each picture truly belongs to.

Two layouts are read:

* a folder whose subfolders name the classes — by class name (case-insensitive, ``_`` = space)
  or by class index — each holding that class's pictures (not searched deeper);
* a CSV file of ``path,label`` rows (a header row is optional; relative paths are relative to
  the CSV's folder; a label is a class name or index as above).

A label that names no class of the model is never guessed: its pictures are skipped and ONE
warning line lists the unknown names and the model's classes. Files that cannot be read are not
checked here (that would decode every picture twice): triage turns them into error rows.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .class_names import LIST_CLASSES_UP_TO  # class names a warning lists in full
from .errors import ImageLoadError, LabelError
from .images import find_images

__all__ = ["LabelledPicture", "LabelSet", "read_labels", "normalise_label"]

#: First-row words that make it a header rather than a picture (compared case-insensitively).
HEADER_WORDS = frozenset({"path", "image", "file", "filename", "filepath", "picture"})


@dataclass(frozen=True)
class LabelledPicture:
    """One picture and the index of its true class."""

    path: str
    true_index: int


@dataclass
class LabelSet:
    """The pictures whose label names a class, the labels that did not, and the one warning about them."""

    pictures: list[LabelledPicture] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # unknown label -> pictures skipped
    warning: str | None = None


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


def read_labels(source: str | os.PathLike[str], class_names: list[str]) -> LabelSet:
    """The labelled pictures of a folder of class subfolders or of a ``path,label`` CSV.

    Raises :class:`LabelError` (one line) when the source is neither, or when no picture has a
    label that names a class.
    """
    path = Path(source)
    if not class_names:
        raise LabelError("This model has no class names to match labels against.")
    resolve = _Resolver(class_names)
    if path.is_dir():
        found, unknown = _from_folder(path, resolve)
        kind = "subfolders"
    elif path.is_file():
        found, unknown = _from_csv(path, resolve)
        kind = "labels"
    else:
        raise LabelError(f"{path} not found: give a folder with one subfolder per class, or a CSV of path,label.")
    labels = LabelSet(pictures=found, skipped=dict(unknown))
    if unknown:
        labels.warning = _warning(unknown, class_names, kind)
    if not found:
        reason = labels.warning or ("It has no subfolders of pictures (one per class)." if path.is_dir()
                                    else "It has no rows.")
        raise LabelError(f"No labelled pictures in {path}. {reason}")
    return labels


def _from_folder(folder: Path, resolve: _Resolver) -> tuple[list[LabelledPicture], Counter]:
    try:
        subfolders = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                            key=lambda p: (p.name.lower(), p.name))
    except OSError as error:
        raise LabelError(f"{folder} cannot be read: {(error.strerror or str(error)).lower()}.") from None
    found: list[LabelledPicture] = []
    unknown: Counter = Counter()
    for sub in subfolders:
        try:
            pictures = find_images([sub])
        except ImageLoadError:
            continue  # an empty subfolder says nothing about any picture
        index = resolve(sub.name)
        if index is None:
            unknown[sub.name] += len(pictures)
        else:
            found += [LabelledPicture(str(p), index) for p in pictures]
    return found, unknown


def _from_csv(table: Path, resolve: _Resolver) -> tuple[list[LabelledPicture], Counter]:
    try:
        text = table.read_text(encoding="utf-8-sig")  # Excel writes a byte-order mark
    except UnicodeDecodeError:
        raise LabelError(f"{table} is not a UTF-8 text file: give a CSV of path,label.") from None
    except OSError as error:
        raise LabelError(f"{table} cannot be read: {(error.strerror or str(error)).lower()}.") from None
    base = table.parent
    found: list[LabelledPicture] = []
    unknown: Counter = Counter()
    first = True
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if first:
            first = False
            if cells[0].casefold() in HEADER_WORDS and not (base / cells[0]).is_file():
                continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise LabelError(f"{table}, line {number}: expected path,label, got '{','.join(row)}'.")
        picture = Path(cells[0])
        index = resolve(cells[1])
        if index is None:
            unknown[cells[1]] += 1
        else:
            found.append(LabelledPicture(str(picture if picture.is_absolute() else base / picture), index))
    return found, unknown


def _warning(unknown: Counter, class_names: list[str], kind: str) -> str:
    count = sum(unknown.values())
    names = ", ".join(f"'{name}' ({n})" for name, n in sorted(unknown.items(), key=lambda item: item[0].lower()))
    if len(class_names) <= LIST_CLASSES_UP_TO:
        classes = f"This model's classes: {', '.join(class_names)} (or their indices 0–{len(class_names) - 1})."
    else:
        shown = ", ".join(class_names[:LIST_CLASSES_UP_TO])
        classes = (f"This model has {len(class_names)} classes ({shown}, …); "
                   f"indices 0–{len(class_names) - 1} work too.")
    return (f"Skipped {count} picture{'s' if count != 1 else ''} whose {kind} name no class of this model: "
            f"{names}. {classes}")
