"""Boxes marked on a picture in the window, saved beside it (core/object_sidecar.py), and read back
by ``object_mask`` for pictures that --masks/--boxes do not name (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gradcam_desktop.core.inside_share import MaskError, object_mask
from gradcam_desktop.core.object_sidecar import MAX_BYTES, read_boxes, sidecar_path, write_boxes


@pytest.fixture
def picture(tmp_path) -> Path:
    path = tmp_path / "cat.jpg"
    path.write_bytes(b"")  # only its name matters here
    return path


def test_round_trip_and_removal(picture):
    assert read_boxes(picture) is None
    written = write_boxes(picture, [(1, 2, 5, 6), (0.5, 0.25, 3.75, 4)])
    assert written == picture.with_name("cat.jpg.object.json") == sidecar_path(picture)
    assert read_boxes(picture) == [(1.0, 2.0, 5.0, 6.0), (0.5, 0.25, 3.75, 4.0)]
    assert not list(picture.parent.glob("*.tmp*"))  # written atomically, nothing left beside it
    write_boxes(picture, [])
    assert not written.exists() and read_boxes(picture) is None


def test_photo_png_and_photo_jpg_have_their_own_sidecars(tmp_path):
    assert sidecar_path(tmp_path / "a.png") != sidecar_path(tmp_path / "a.jpg")


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe not text", "is not JSON"),
    (b"[1, 2]", "should hold"),
    (b'{"boxes": 3}', "should hold"),
    (b'{"boxes": [[0, 0, 1]]}', "four numbers"),
    (b'{"boxes": [[5, 0, 1, 3]]}', "x0 < x1"),
    (b'{"boxes": [[0, 0, true, 3]]}', "four numbers"),
    (b'{"boxes": [[0, 0, NaN, 3]]}', "four numbers"),
    (b'{"boxes": [[0, 0, 1e999, 3]]}', "four numbers"),
    (b"[" * 100_000, "is not JSON"),
    (b'{"boxes": [' + b",".join([b"[0,0,1,1]"] * 1001) + b"]}", "at most 1000"),
])
def test_a_bad_sidecar_is_one_line(picture, content, words):
    sidecar_path(picture).write_bytes(content)
    with pytest.raises(MaskError) as caught:
        read_boxes(picture, MaskError)
    message = str(caught.value)
    assert words in message and "\n" not in message and "cat.jpg.object.json" in message


def test_a_huge_sidecar_is_refused_without_reading_it(picture):
    with open(sidecar_path(picture), "wb") as handle:
        handle.truncate(2 ** 34)  # 16 GB, sparse
    with pytest.raises(MaskError, match="larger than"):
        read_boxes(picture, MaskError)
    assert MAX_BYTES < 2 ** 20


def test_object_mask_falls_back_to_the_sidecar(tmp_path, picture):
    write_boxes(picture, [(1, 1, 3, 4)])
    expected = np.zeros((6, 8), bool)
    expected[1:4, 1:3] = True  # columns 1..2, rows 1..3: the CSV convention (x1, y1 exclusive)
    assert np.array_equal(object_mask(picture, (6, 8)), expected)
    # A boxes CSV that names the picture comes first; an empty masks folder does not hide the sidecar.
    other = {str(picture): [(0.0, 0.0, 8.0, 6.0)]}
    assert object_mask(picture, (6, 8), boxes=other).all()
    (tmp_path / "masks").mkdir()
    assert np.array_equal(object_mask(picture, (6, 8), masks_dir=tmp_path / "masks"), expected)
    assert object_mask(picture, (6, 8), sidecar=False) is None
    json.loads(sidecar_path(picture).read_text(encoding="utf-8"))  # plain JSON a person can read
