"""Helpers shared by the tests of hostile files and inputs (pytest's pythonpath is tests/)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePath


def rewrite_keras(src: Path, dest: Path, edit=None, members: dict[str, bytes] | None = None,
                  compress: int = zipfile.ZIP_STORED) -> Path:
    """Copy a .keras zip, editing config.json with ``edit(config)`` and replacing or adding members."""
    members = dict(members or {})
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", compression=compress) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "config.json" and edit is not None:
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            if info.filename in members:
                data = members.pop(info.filename)
            zout.writestr(info.filename, data)
        for name, data in members.items():
            zout.writestr(name, data)
    return dest


def limit_path_comparisons(monkeypatch, bound: int) -> dict[str, int]:
    """Count ``PurePath ==`` calls (``{"n": count}``) and fail at once past ``bound``: a pairwise
    de-duplication of 100,000 paths would otherwise run for minutes before a test could say so."""
    counted = {"n": 0}
    equal = PurePath.__eq__

    def comparing(self, other):
        counted["n"] += 1
        if counted["n"] > bound:
            raise AssertionError(f"more than {bound} path comparisons: pairwise de-duplication")
        return equal(self, other)

    monkeypatch.setattr(PurePath, "__eq__", comparing)
    return counted
