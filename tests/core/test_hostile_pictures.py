"""Issue 18, hostile pictures: devices, FIFOs and folders given as pictures, header-only bombs, huge folders.

Whatever could hang (a FIFO) or grow without end (/dev/zero) is opened in a child process whose
timeout only guards against a hang: nothing asserts how long anything takes. Memory is the child's
peak resident size (VmHWM), counted from a baseline taken after a warm-up decode (every Pillow
plugin and NumPy's paths loaded) and a reset of the peak (5 written to /proc/self/clear_refs).
Expected messages are written out by hand; memory bounds are derived in each test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core import images
from gradcam_desktop.core.errors import ImageLoadError
from hostile import limit_path_comparisons
from gradcam_desktop.core.images import MAX_DECODED_BYTES, MAX_FILE_BYTES, MAX_PIXELS, find_images, load_image

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="devices, FIFOs and /proc/self/status as Linux has them")

#: Seconds a child may take before it counts as hung; a guard against a hang, not a measure of speed.
HANG_GUARD = 300

_LOAD = r"""
import io, json, sys
from PIL import Image
from gradcam_desktop.core import images
from gradcam_desktop.core.errors import ImageLoadError

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

Image.init()  # every plugin imported before the baseline: their modules are not the picture's cost
warm = io.BytesIO()
Image.new("RGBA", (8, 8)).save(warm, "PNG")
images.load_image(warm.getvalue())
if len(sys.argv) > 2:  # the race: the check sees the regular file argv[2], the open finds argv[1]
    import os
    real_stat = os.stat
    os.stat = lambda path, *args, **kwargs: real_stat(sys.argv[2], *args, **kwargs)
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # the peak starts again from here
try:
    shape, error = list(images.load_image(sys.argv[1]).rgb.shape), None
except ImageLoadError as exc:
    shape, error = None, str(exc)
print(json.dumps({"error": error, "shape": shape, "grew": status("VmHWM") - base}))
"""


def _load_in_child(path, *extra) -> tuple[dict, str]:
    """load_image(path) in a fresh interpreter: (its answer and memory growth, its stderr)."""
    child = subprocess.run([sys.executable, "-c", _LOAD, str(path), *map(str, extra)], capture_output=True,
                           text=True, timeout=HANG_GUARD)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1]), child.stderr


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _zero_rgba_png(path: Path, width: int, height: int) -> Path:
    """A complete, valid RGBA PNG of width x height transparent black pixels, written by hand.

    Each row is filter byte 0 and 4 * width zeros; zlib squeezes 9,999 x 10,000 of them into
    about 390 KB, the red team's file: decoding it would take gigabytes.
    """
    squeeze = zlib.compressobj(6)
    row = bytes(1 + 4 * width)
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits, colour type 6 = RGBA
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return _zero_rgba_png(tmp_path_factory.mktemp("bomb") / "bomb.png", 9_999, 10_000)


# ---------------------------------------------------------------- not a regular file


def test_a_folder_given_as_a_picture(tmp_path):
    with pytest.raises(ImageLoadError) as info:
        load_image(tmp_path)
    assert str(info.value) == f"{tmp_path} is a folder, not an image file: open the pictures inside it."


@linux_only
def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    answer, stderr = _load_in_child(fifo)  # before the fix: open() waits for a writer forever
    assert answer["error"] == f"{fifo} is a named pipe (FIFO), not an image file: give the path of a picture file."
    assert stderr == ""


@linux_only
def test_a_fifo_swapped_in_after_the_check_neither_blocks_nor_is_read(tmp_path):
    fifo = tmp_path / "x.png"
    os.mkfifo(fifo)
    regular = tmp_path / "checked.png"
    regular.write_bytes(b"x")
    # The child's stat answers for the regular file (the file as it was when checked), so only
    # O_NONBLOCK keeps the open from waiting and only the fstat of the open file refuses it.
    answer, _ = _load_in_child(fifo, regular)
    assert answer["error"] == f"{fifo} is a named pipe (FIFO), not an image file: give the path of a picture file."


@linux_only
def test_dev_zero_is_refused_and_never_read():
    answer, stderr = _load_in_child("/dev/zero")  # before the fix: read until killed at 3 GB
    assert answer["error"] == "/dev/zero is a character device, not an image file: give the path of a picture file."
    assert stderr == ""
    # The most the loader reads of anything is MAX_FILE_BYTES + 1 bytes; /dev/zero is refused before
    # it is opened, so the peak cannot pass that (the baseline is the interpreter, already warm).
    assert answer["grew"] <= MAX_FILE_BYTES + 1, answer


@linux_only
def test_triage_rows_naming_a_device_or_a_fifo_are_error_rows(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    table = tmp_path / "labels.csv"
    table.write_text(f"/dev/zero,zero\n{fifo},one\n", encoding="utf-8")
    # triage's own loop with an engine that is only its class names: both rows fail while decoding,
    # before any model would run.
    code = (
        "import json, sys\n"
        "from types import SimpleNamespace\n"
        "from gradcam_desktop.core.triage import read_labels, triage_batch\n"
        "names = ['zero', 'one']\n"
        "pictures = read_labels(sys.argv[1], names).pictures\n"
        "rows = triage_batch(SimpleNamespace(class_names=names), [p.path for p in pictures],\n"
        "                    [p.true_index for p in pictures])\n"
        "print(json.dumps([[row.image, row.predicted_index, row.error] for row in rows]))\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(table)], capture_output=True, text=True,
                           timeout=HANG_GUARD)
    assert child.returncode == 0, child.stderr[-3000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == [
        ["/dev/zero", None, "/dev/zero is a character device, not an image file: give the path of a picture file."],
        [str(fifo), None, f"{fifo} is a named pipe (FIFO), not an image file: give the path of a picture file."],
    ]


@linux_only
def test_folders_skip_fifos_and_links_to_devices_but_keep_what_is_named(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    os.mkfifo(tmp_path / "b.png")
    (tmp_path / "c.png").symlink_to("/dev/zero")
    (tmp_path / "d.png").symlink_to(tmp_path / "a.png")  # a link to a picture is a picture (and the same one)
    assert find_images([tmp_path]) == [tmp_path / "a.png"]
    # Named explicitly, a file is kept whatever it is: loading it says what is wrong.
    assert find_images([tmp_path / "b.png"]) == [tmp_path / "b.png"]


def test_a_name_with_a_line_break_stays_one_line(tmp_path):
    odd = tmp_path / "two\nlines.png"
    odd.write_bytes(b"not a picture")
    with pytest.raises(ImageLoadError) as info:
        load_image(odd)
    assert str(info.value) == f"{tmp_path}/two\\nlines.png is not an image Pillow can read (.png)."


# ---------------------------------------------------------------- bytes once decoded, from the header


def test_the_red_team_bomb_is_under_the_pixel_limit_and_tiny(bomb):
    assert 9_999 * 10_000 < MAX_PIXELS  # so the byte limit is what has to refuse it
    assert bomb.stat().st_size < 500_000


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # in-process: pytest resets filters
def test_a_header_only_bomb_is_refused_before_decoding(bomb):
    with pytest.raises(ImageLoadError) as info:
        load_image(bomb)
    message = str(info.value)
    found = re.fullmatch(rf"{re.escape(str(bomb))} is too large to decode \(9999 x 10000 RGBA pixels need about "
                         r"([\d,]+) MB; the limit is 512 MB\): scale it down to at most (\d+) x (\d+) pixels and "
                         r"open that\.", message)
    assert found, message
    need, width, height = int(found[1].replace(",", "")), int(found[2]), int(found[3])
    # By hand: decoding needs at least Pillow's RGBA storage (4 bytes a pixel) and the RGB result (3) at once.
    assert need >= 9_999 * 10_000 * 7 / 2**20
    # The advice keeps the shape, and what it names could hold at least those 7 bytes a pixel within the limit.
    assert abs(width / height - 9_999 / 10_000) < 1 / height
    assert width * height * 7 <= MAX_DECODED_BYTES


@linux_only
def test_the_bomb_costs_no_memory_and_prints_nothing(bomb):
    answer, stderr = _load_in_child(bomb)  # before the fix: 2.9 GB and Pillow's warning on stderr
    assert answer["error"] and "too large to decode" in answer["error"]
    assert stderr == ""  # no DecompressionBombWarning, nor any other raw text
    # Refused from the header: nothing that grows with the picture was allocated. A decode's first
    # allocation is Pillow's storage of 4 bytes a pixel; the bound is a quarter of it, one byte a pixel.
    assert answer["grew"] < 9_999 * 10_000, answer


def test_the_limit_is_on_the_estimate_of_the_decode(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.new("RGBA", (40, 30), (1, 2, 3, 255)).save(path)
    with Image.open(path) as header:
        cost = images.decode_bytes(*header.size, header.mode, header.format, path.stat().st_size)
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", cost)
    assert load_image(path).rgb.shape == (30, 40, 3)  # exactly at the limit: decoded
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", cost - 1)
    with pytest.raises(ImageLoadError, match="too large to decode"):
        load_image(path)


def _noise(rng, height: int, width: int, bands: int) -> np.ndarray:
    """Blocks of 10 x 10 random colours: files of ordinary size, pixels that are not all alike."""
    blocks = rng.integers(0, 256, (height // 10 + 1, width // 10 + 1, bands), dtype=np.uint8)
    return np.kron(blocks, np.ones((10, 10, 1), np.uint8))[:height, :width]


def _rgba_png_rotated(path, rng):
    exif = Image.Exif()
    exif[0x0112] = 6  # the rotated copy exists beside the decoded picture
    Image.fromarray(_noise(rng, 2500, 3000, 4), "RGBA").save(path, exif=exif.tobytes())


def _cmyk_progressive_jpeg(path, rng):
    # libjpeg keeps every coefficient of a progressive file: 2 bytes a sample, 4 bands, no subsampling.
    Image.fromarray(_noise(rng, 2500, 3000, 4), "CMYK").save(path, progressive=True, quality=95)


def _rgb_webp(path, rng):
    Image.fromarray(_noise(rng, 2500, 3000, 3)).save(path, quality=90)


def _float_tiff(path, rng):
    Image.fromarray(_noise(rng, 2500, 3000, 1)[:, :, 0].astype(np.float32) / 85 - 1, "F").save(path)


@linux_only
@pytest.mark.parametrize("make, suffix", [(_rgba_png_rotated, ".png"), (_cmyk_progressive_jpeg, ".jpg"),
                                          (_rgb_webp, ".webp"), (_float_tiff, ".tif")],
                         ids=["rotated RGBA PNG", "progressive CMYK JPEG", "WebP", "float TIFF"])
def test_a_decode_stays_within_its_estimate(tmp_path, make, suffix):
    """The limit is only as good as decode_bytes: a real decode's peak, measured, must stay within it."""
    path = tmp_path / f"picture{suffix}"
    make(path, np.random.default_rng(0))
    with Image.open(path) as header:
        estimate = images.decode_bytes(*header.size, header.mode, header.format, path.stat().st_size)
        assert header.size == (3000, 2500)
    answer, stderr = _load_in_child(path)
    assert answer["error"] is None and stderr == ""
    assert answer["shape"] == ([3000, 2500, 3] if make is _rgba_png_rotated else [2500, 3000, 3])
    assert answer["grew"] <= estimate, (answer["grew"], estimate)


# ---------------------------------------------------------------- a folder of 100,000 pictures


def test_a_folder_of_100000_pictures_expands_without_comparing_pairs(tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    names = [f"{i:06d}.png" for i in range(100_000)]  # empty files: a sparse folder, sorted by name here
    try:
        for name in names:
            os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))
        given = [folder, folder, folder / names[1]]
        # A de-duplication against a list compares each new path with every one before it: 5e9
        # comparisons for 100,000. A set compares a path only with one of the same hash: one
        # comparison per path already seen (distinct 64-bit hashes of 1e5 names collide with
        # probability ~1e5**2 / 2**65). So at most one per path given; past that, fail at once
        # rather than run for minutes.
        bound = 2 * len(names) + 1
        limit_path_comparisons(monkeypatch, bound)
        found = find_images(given)
        monkeypatch.undo()
        assert found == [folder / name for name in names]
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # 100,000 inodes are not left in the temp folder

