"""--install-desktop-entry / --uninstall-desktop-entry into a temporary home; the MIME file's content."""

import configparser
import fnmatch
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gradcam_desktop import desktop_entry
from gradcam_desktop.core.assets import asset_path

NS = "{http://www.freedesktop.org/standards/shared-mime-info}"
OURS = ("gradcam", "x-keras")


def _desktop(path: Path) -> dict:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in desktop files
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def _mentions_us(root: Path) -> list[str]:
    found = []
    for path in root.rglob("*"):
        text = path.name if path.is_dir() else path.name + path.read_bytes().decode("utf-8", "replace")
        if any(word in text for word in OURS):
            found.append(str(path.relative_to(root)))
    return found


@pytest.fixture
def no_tools(tmp_path):
    """A PATH without update-desktop-database / update-mime-database."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return str(empty)


def test_the_mime_file_declares_keras_and_hdf5_by_glob():
    root = ET.parse(asset_path("gradcam-desktop-mime.xml")).getroot()
    assert root.tag == f"{NS}mime-info"
    types = {t.get("type"): t for t in root.findall(f"{NS}mime-type")}
    assert set(types) == {"application/x-keras", "application/x-hdf5"}
    globs = {name: [g.get("pattern") for g in t.findall(f"{NS}glob")] for name, t in types.items()}
    assert globs == {"application/x-keras": ["*.keras"], "application/x-hdf5": ["*.h5", "*.hdf5"]}
    # What a file manager matches (globs are case-insensitive unless case-sensitive="true").
    for name, expected in (("My Model.keras", "application/x-keras"), ("weights.H5", "application/x-hdf5"),
                           ("photo.jpg", None), ("model.keras.txt", None)):
        matches = [t for t, patterns in globs.items() if any(fnmatch.fnmatch(name.lower(), p) for p in patterns)]
        assert matches == ([expected] if expected else []), name
    # A .keras file is a zip archive: file managers that sniff content still agree.
    assert types["application/x-keras"].find(f"{NS}sub-class-of").get("type") == "application/zip"
    assert all(t.find(f"{NS}comment").text for t in types.values())


def test_install_writes_launcher_icon_and_mime_types_then_uninstall_removes_them(tmp_path, no_tools):
    data = tmp_path / "data"
    env = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(data), "PATH": no_tools}
    command = [str(tmp_path / "My Apps" / "gradcam-desktop")]
    place = desktop_entry.install(env, command)
    assert place.refreshed == []  # no tools on PATH: still installed, nothing failed
    entry = data / "applications" / "gradcam-desktop.desktop"
    icon = data / "icons" / "hicolor" / "scalable" / "apps" / "gradcam-desktop.svg"
    mime = data / "mime" / "packages" / "gradcam-desktop.xml"
    assert sorted(place.written) == sorted([entry, icon, mime])
    keys = _desktop(entry)
    assert keys["Type"] == "Application" and keys["Terminal"] == "false"
    # A path with a space is quoted; %F lets a double-click pass every selected file.
    assert keys["Exec"] == f'"{command[0]}" %F'
    assert keys["TryExec"] == f'"{command[0]}"'
    assert keys["Icon"] == icon.stem
    mime_types = [m for m in keys["MimeType"].split(";") if m]
    assert {"application/x-keras", "application/x-hdf5", "image/png", "image/jpeg"} <= set(mime_types)
    assert icon.read_bytes() == asset_path("icons", "app.svg").read_bytes()
    assert mime.read_bytes() == asset_path("gradcam-desktop-mime.xml").read_bytes()
    # Every type the launcher claims for models is one the MIME file declares.
    declared = {t.get("type") for t in ET.parse(mime).getroot().findall(f"{NS}mime-type")}
    assert declared <= set(mime_types)

    other = data / "applications" / "someone-else.desktop"
    other.write_text("[Desktop Entry]\nType=Application\nName=Other\nExec=other\n")
    removed = desktop_entry.uninstall(env)
    assert sorted(removed.removed) == sorted([entry, icon, mime])
    assert _mentions_us(data) == []
    assert other.is_file()  # not ours: kept, and so is its folder
    assert not (data / "icons").exists() and not (data / "mime").exists()  # the folders we emptied
    assert desktop_entry.uninstall(env).removed == []  # twice is harmless


@pytest.mark.skipif(shutil.which("update-mime-database") is None, reason="shared-mime-info not installed")
def test_with_update_mime_database_the_types_are_registered_and_then_gone(tmp_path):
    data = tmp_path / "data"
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(data), "PATH": os.environ.get("PATH", "")}
    place = desktop_entry.install(env, ["/opt/gradcam/gradcam-desktop"])
    assert "update-mime-database" in place.refreshed
    globs = (data / "mime" / "globs2").read_text()
    assert "application/x-keras:*.keras" in globs and "application/x-hdf5:*.h5" in globs
    desktop_entry.uninstall(env)
    assert _mentions_us(data) == []  # the regenerated database no longer knows our types


def test_xdg_data_home_must_be_absolute_else_home_local_share():
    assert desktop_entry.data_home({"XDG_DATA_HOME": "/x/y", "HOME": "/h"}) == Path("/x/y")
    assert desktop_entry.data_home({"XDG_DATA_HOME": "rel/path", "HOME": "/h"}) == Path("/h/.local/share")
    assert desktop_entry.data_home({"HOME": "/h"}) == Path("/h/.local/share")


@pytest.mark.parametrize("argument, written", [
    ("/usr/bin/gradcam-desktop", "/usr/bin/gradcam-desktop"),
    ("/opt/My Apps/run", '"/opt/My Apps/run"'),
    # Inside quotes $ and " get a backslash; the desktop-file string escapes that backslash again.
    ('/a$b/say "hi"', '"/a\\\\$b/say \\\\"hi\\\\""'),
    ("/p/100%", "/p/100%%"),
])
def test_exec_arguments_are_quoted_as_the_desktop_entry_spec_says(argument, written):
    assert desktop_entry.quote_exec_argument(argument) == written


def test_the_launch_command_of_a_bundle_and_of_a_venv(tmp_path):
    assert desktop_entry.launch_command("/opt/GradCAMDesktop/GradCAMDesktop", frozen=True) == [
        "/opt/GradCAMDesktop/GradCAMDesktop"]
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").touch()
    script = bin_dir / "gradcam-desktop"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert desktop_entry.launch_command(str(bin_dir / "python"), frozen=False) == [str(script)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the desktop entry is for Linux")
def test_the_command_line_options_install_and_uninstall(tmp_path, no_tools):
    env = {**os.environ, "HOME": str(tmp_path), "PATH": no_tools}
    env.pop("XDG_DATA_HOME", None)
    run = lambda option: subprocess.run([sys.executable, "-m", "gradcam_desktop", option], capture_output=True,  # noqa: E731
                                        text=True, timeout=120, env=env, cwd=str(tmp_path))
    installed = run("--install-desktop-entry")
    assert installed.returncode == 0, installed.stderr
    entry = tmp_path / ".local" / "share" / "applications" / "gradcam-desktop.desktop"
    assert installed.stdout.strip().splitlines() == [f"Installed Grad-CAM Desktop in the applications menu: {entry}"]
    exec_program = _desktop(entry)["Exec"].removesuffix(" %F").strip('"')
    assert Path(exec_program).is_absolute() and os.access(exec_program, os.X_OK)
    removed = run("--uninstall-desktop-entry")
    assert removed.returncode == 0 and "3 files" in removed.stdout
    assert _mentions_us(tmp_path) == []
