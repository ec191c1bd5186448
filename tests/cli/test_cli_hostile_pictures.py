"""Issue 18, hostile pictures at the command line: a FIFO or a device as ``-i``, a batch of 100,000 files.

``gradcam explain`` runs in a child process whose timeout only guards against a hang (before the
fix a FIFO waited for a writer forever): nothing asserts how long it takes. The expected lines are
written out by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from gradcam_desktop.commands import shared
from gradcam_desktop.cli import main
from gradcam_desktop.core.errors import GradCamError
from hostile import limit_path_comparisons

#: Seconds the child may take before it counts as hung (TensorFlow and the demo model load first).
HANG_GUARD = 300


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIFOs and /dev/zero as Linux has them")
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_explain_refuses_a_fifo_or_a_device_in_one_line(tmp_path, kind):
    if kind == "fifo":
        picture = str(tmp_path / "x.png")
        os.mkfifo(picture)
        what = "a named pipe (FIFO)"
    else:
        picture, what = "/dev/zero", "a character device"  # before the fix: killed at 3 GB after ~10 s
    env = {**os.environ}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # TensorFlow's start-up chatter must not reach stderr either
    child = subprocess.run([sys.executable, "-m", "gradcam_desktop.cli", "explain", "-m", "demo", "-i", picture],
                           capture_output=True, text=True, env=env, timeout=HANG_GUARD)
    assert child.returncode == 1
    assert child.stderr.strip().splitlines() == [
        f"Error: {picture} is {what}, not an image file: give the path of a picture file."]
    assert child.stdout == ""


class _Expanded(GradCamError):
    """Raised where the model would open: the inputs have been expanded by then."""


def test_batch_expands_100000_files_without_comparing_pairs(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "many"
    folder.mkdir()
    count = 100_000
    try:
        for i in range(count):
            os.close(os.open(folder / f"{i:06d}.png", os.O_CREAT | os.O_WRONLY, 0o644))  # empty: a sparse folder

        def stop(args):
            raise _Expanded("the inputs are expanded")

        monkeypatch.setattr(shared, "open_model", stop)
        # De-duplicating against a list compares each new path with every one before it (5e9
        # comparisons: more than 5 minutes before the fix). A set compares a path only with one of
        # the same hash, i.e. once per path already seen. The folder given twice: at most one
        # comparison per path found; past that, fail at once instead of running for minutes.
        bound = 2 * count
        limit_path_comparisons(monkeypatch, bound)
        code = main(["batch", "-m", "demo", "--out-dir", str(tmp_path / "out"), str(folder), str(folder)])
        monkeypatch.undo()
        _, err = capsys.readouterr()
        assert code == 1
        assert err.strip().splitlines() == ["Error: the inputs are expanded"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # 100,000 inodes are not left in the temp folder
