"""A class named by the user: case-insensitive, with close matches suggested when it does not exist."""

from __future__ import annotations

import difflib

from .errors import ClassSelectionError

__all__ = ["LIST_CLASSES_UP_TO", "class_by_name"]

#: How many classes a "no such class" message lists in full.
LIST_CLASSES_UP_TO = 20


def class_by_name(names: list[str], asked: str) -> int:
    """The index of class ``asked`` in ``names``; ClassSelectionError with close matches otherwise."""
    wanted = asked.strip().casefold()
    folded = [name.casefold() for name in names]
    if wanted in folded:
        return folded.index(wanted)
    close = [names[folded.index(m)] for m in difflib.get_close_matches(wanted, folded, n=3, cutoff=0.6)]
    close += [n for n in names if wanted and wanted in n.casefold() and n not in close][: 5 - len(close)]
    message = f"No class named '{asked}'."
    if close:
        message += f" Did you mean: {', '.join(close)}?"
    if len(names) <= LIST_CLASSES_UP_TO:
        message += f" This model's classes: {', '.join(names)}."
    else:
        message += " `gradcam predict` shows the likely ones; class indices work too."
    raise ClassSelectionError(message)
