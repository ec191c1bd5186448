"""Triage thumbnails read pictures through the same guards as maps: no FIFO blocks the pool, no
picture too costly to decode is decoded."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

from gradcam_desktop.core import images


def _png_header_only(path, width: int, height: int) -> None:
    """A valid RGBA PNG of ``width`` × ``height`` zero pixels, a few hundred KB on disk."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + 4 * width)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_fifo_and_costly_picture_give_no_thumbnail_and_do_not_block(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    big = tmp_path / "big.png"
    _png_header_only(big, 9_000, 9_000)
    with Image.open(big) as img:  # the premise: this one is over the decode limit, from its header
        assert images.decode_bytes(*img.size, img.mode, img.format, big.stat().st_size) > images.MAX_DECODED_BYTES
    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(good)
    code = (
        "import sys\n"
        "from gradcam_desktop.ui.triage.thumbnails import make_thumbnail\n"
        "print([make_thumbnail(p).isNull() for p in sys.argv[1:]])\n"
    )
    # A subprocess, so that a regression (a blocking open of the FIFO) fails by the timeout, which only
    # guards against a hang: the three thumbnails take well under a second.
    child = subprocess.run([sys.executable, "-c", code, str(fifo), str(big), str(good)], capture_output=True,
                           text=True, timeout=300, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.strip().splitlines()[-1] == "[True, True, False]"
    assert "DecompressionBomb" not in child.stderr
