"""Atomic writes: complete files or nothing, one-line OutputError, no temp files left behind."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core import files
from gradcam_desktop.core.errors import OutputError
from gradcam_desktop.core.files import atomic_write_bytes, atomic_write_npy, atomic_write_png


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_bytes_creates_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"hello")
    assert target.read_bytes() == b"hello"
    assert _names(tmp_path) == ["out.bin"]


def test_write_bytes_replaces_existing_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old content")
    atomic_write_bytes(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["out.bin"]


def test_new_file_gets_normal_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


def test_missing_folder_raises_output_error(tmp_path):
    target = tmp_path / "missing" / "x.png"
    with pytest.raises(OutputError) as info:
        atomic_write_bytes(target, b"data")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"Cannot write {target}:")
    assert "does not exist" in msg and msg.endswith("Choose another folder.")
    assert not (tmp_path / "missing").exists()  # folders are never created here
    assert _names(tmp_path) == []


def test_parent_is_a_file_raises_output_error(tmp_path):
    # Tests run as root, where chmod 0o500 does not stop writes; a file as "folder" always fails.
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(OutputError, match="not a folder"):
        atomic_write_png(tmp_path / "afile" / "x.png", np.zeros((2, 2, 3), np.uint8))
    assert _names(tmp_path) == ["afile"]


def test_target_is_a_folder_raises_output_error(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(OutputError, match="folder with that name"):
        atomic_write_bytes(tmp_path / "x.png", b"data")
    assert _names(tmp_path) == ["x.png"]


def test_failed_replace_keeps_existing_file_and_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "result.png"
    target.write_bytes(b"previous result")

    def deny(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(dst))

    monkeypatch.setattr(files.os, "replace", deny)
    with pytest.raises(OutputError) as info:
        atomic_write_bytes(target, b"new result")
    assert str(info.value) == f"Cannot write {target}: permission denied. Choose another folder."
    assert target.read_bytes() == b"previous result"
    assert _names(tmp_path) == ["result.png"]


def test_disk_full_during_write_removes_temp(tmp_path, monkeypatch):
    target = tmp_path / "map.npy"
    target.write_bytes(b"keep me")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OutputError, match="the disk is full"):
        atomic_write_npy(target, np.ones(3))
    assert target.read_bytes() == b"keep me"
    assert _names(tmp_path) == ["map.npy"]


def test_png_round_trip_keeps_rgb_order_and_shape(tmp_path):
    rgb = np.zeros((3, 5, 3), np.uint8)  # non-square: (h, w) must not be swapped
    rgb[0, 0] = (255, 0, 0)  # red stays red (no BGR swap in the file)
    rgb[2, 4] = (10, 20, 30)
    target = tmp_path / "overlay.png"
    atomic_write_png(target, rgb)
    with Image.open(target) as img:
        assert img.mode == "RGB"
        back = np.asarray(img)
    np.testing.assert_array_equal(back, rgb)


def test_png_grayscale_and_non_ascii_name(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    target = tmp_path / "karte-ü-图.png"
    atomic_write_png(target, gray)
    with Image.open(target) as img:
        assert img.mode == "L"
        np.testing.assert_array_equal(np.asarray(img), gray)


def test_png_rejects_wrong_dtype_and_shape(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_png(tmp_path / "a.png", np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        atomic_write_png(tmp_path / "a.png", np.zeros((2, 2, 4), np.uint8))
    assert _names(tmp_path) == []


def test_npy_round_trip(tmp_path):
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    atomic_write_npy(tmp_path / "raw.npy", arr)
    back = np.load(tmp_path / "raw.npy", allow_pickle=False)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, arr)


def test_unique_stems_keep_outputs_apart():
    from gradcam_desktop.core.files import unique_stems

    assert unique_stems(["a/x.png", "b/x.jpg", "c/X.png", "y.png", ".png"]) == ["x", "x_2", "X_3", "y", ".png"]
