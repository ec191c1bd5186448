"""``gradcam-desktop --install-desktop-entry`` / ``--uninstall-desktop-entry`` (Linux, per user).

Installs three files under the user's data folder ($XDG_DATA_HOME, else ~/.local/share), the
places the freedesktop.org specifications read without root:

    applications/gradcam-desktop.desktop        the launcher (menu entry, "Open With", double-click)
    icons/hicolor/scalable/apps/gradcam-desktop.svg
    mime/packages/gradcam-desktop.xml           application/x-keras (*.keras), application/x-hdf5 (*.h5)

then refreshes the desktop and MIME caches when their tools are installed (without them the
files still work after the next login on most desktops). The launcher's Exec line names the
command that runs this very install: the bundle's executable, or the venv's/pipx's launcher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gradcam_desktop.core.assets import asset_path

APP_ID = "gradcam-desktop"
DESKTOP_FILE = f"{APP_ID}.desktop"
MIME_FILE = f"{APP_ID}.xml"
ICON_FILE = f"{APP_ID}.svg"


@dataclass
class Placement:
    """Where each file goes for one user, and what was done."""

    data_home: Path
    written: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)

    @property
    def desktop(self) -> Path:
        return self.data_home / "applications" / DESKTOP_FILE

    @property
    def icon(self) -> Path:
        return self.data_home / "icons" / "hicolor" / "scalable" / "apps" / ICON_FILE

    @property
    def mime(self) -> Path:
        return self.data_home / "mime" / "packages" / MIME_FILE

    def files(self) -> tuple[Path, Path, Path]:
        return self.desktop, self.icon, self.mime


def data_home(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_DATA_HOME if it is an absolute path (the spec says to ignore a relative one), else ~/.local/share."""
    value = environ.get("XDG_DATA_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share"


def launch_command(executable: str = sys.executable, frozen: bool | None = None) -> list[str]:
    """The command that starts this install of the app (absolute paths, no PATH lookup)."""
    if getattr(sys, "frozen", False) if frozen is None else frozen:
        return [os.path.abspath(executable)]  # the bundle's own executable
    # The gui-script sits beside the interpreter in a venv, pipx's venv included.
    beside = Path(executable).parent / APP_ID
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which(APP_ID)
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(executable), "-m", "gradcam_desktop"]


def quote_exec_argument(argument: str) -> str:
    """One Exec argument as the Desktop Entry spec wants it (quoted when needed, escapes doubled)."""
    reserved = set(" \t\n\"'\\><~|&;$*?#()`")
    if argument and not (set(argument) & reserved):
        quoted = argument
    else:
        quoted = '"' + "".join("\\" + c if c in '"`$\\' else c for c in argument) + '"'
    # The value is a desktop-file string, where a backslash is itself escaped; '%' is a field code.
    return quoted.replace("\\", "\\\\").replace("%", "%%")


def desktop_entry_text(command: list[str]) -> str:
    """The shipped launcher with Exec/TryExec pointing at ``command``."""
    exec_line = " ".join(quote_exec_argument(a) for a in command) + " %F"
    lines = []
    for line in asset_path(DESKTOP_FILE).read_text(encoding="utf-8").splitlines():
        if line.startswith("Exec="):
            line = f"Exec={exec_line}"
        elif line.startswith("TryExec="):
            line = f"TryExec={quote_exec_argument(command[0])}" if len(command) == 1 else ""
        if line:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _refresh(place: Placement, environ: Mapping[str, str]) -> None:
    """Rebuild the caches that desktops read, with whichever tools exist; never fails without them."""
    path = environ.get("PATH", os.defpath)
    # No icon cache: desktops watch the user's hicolor folder, and a cache file there would
    # outlive the uninstall.
    for tool, folder in (("update-desktop-database", place.desktop.parent),
                         ("update-mime-database", place.mime.parent.parent)):
        program = shutil.which(tool, path=path)
        if program is None or not folder.is_dir():
            continue
        try:
            subprocess.run([program, str(folder)], capture_output=True, timeout=60, check=True, env=dict(environ))
            place.refreshed.append(tool)
        except (OSError, subprocess.SubprocessError):
            pass  # a stale cache only delays the menu entry until the next login


def install(environ: Mapping[str, str] = os.environ, command: list[str] | None = None) -> Placement:
    """Write the launcher, icon and MIME types for this user; returns what was written."""
    place = Placement(data_home(environ))
    contents = {place.desktop: desktop_entry_text(command or launch_command()).encode("utf-8"),
                place.icon: asset_path("icons", "app.svg").read_bytes(),
                place.mime: asset_path("gradcam-desktop-mime.xml").read_bytes()}
    for target, data in contents.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
        place.written.append(target)
    _refresh(place, environ)
    return place


def uninstall(environ: Mapping[str, str] = os.environ) -> Placement:
    """Remove what install() wrote (and the folders it left empty); returns what was removed."""
    place = Placement(data_home(environ))
    for target in place.files():
        if target.is_file():
            target.unlink()
            place.removed.append(target)
    _refresh(place, environ)
    for target in place.files():
        # Empty folders only, up to the data folder itself (never removed).
        for folder in target.parents:
            if folder == place.data_home or place.data_home not in folder.parents:
                break
            try:
                folder.rmdir()
            except OSError:
                break
    return place


def main(install_entry: bool = True, environ: Mapping[str, str] = os.environ) -> int:
    """The command-line options' body: one line per outcome; the exit code."""
    if not sys.platform.startswith("linux"):
        print("The desktop entry is for Linux; on Windows and macOS the app bundle registers itself.",
              file=sys.stderr)
        return 2
    try:
        place = install(environ) if install_entry else uninstall(environ)
    except OSError as error:
        print(f"Could not {'install' if install_entry else 'remove'} the desktop entry: {error}", file=sys.stderr)
        return 1
    tools = f" (refreshed with {', '.join(place.refreshed)})" if place.refreshed else ""
    if install_entry:
        print(f"Installed Grad-CAM Desktop in the applications menu: {place.desktop}{tools}")
    elif place.removed:
        print(f"Removed Grad-CAM Desktop's menu entry, icon and file types ({len(place.removed)} files){tools}")
    else:
        print("Nothing to remove: no Grad-CAM Desktop menu entry was installed for this user.")
    return 0
