"""`gradcam triage|patterns --ray` (issue 19): the same rows and files as a local run, from a Ray actor pool.

One local Ray instance (2 CPUs: two actors, each with its own engine) serves the module. Each
command runs twice in this process, locally and with --ray, on the folders and models of
test_cli_triage.py and test_cli_patterns.py, and the files are compared. Both folders hold two
groups of pictures, so each group is a block of its own (ray_folder.BLOCKS_PER_ACTOR) that either
actor may take, and the rows come back in whichever order the blocks finish.

What may differ, and by how much: the workers run the same model file with the same batches
(a Ray row is one group of the local loop), in another process with one TensorFlow thread
instead of the machine's: the float32 sums of a forward pass or a map may be added in another
order, a few units of float32 rounding (u = 6e-8) relative. The tables print 6 significant
digits, so a printed number may move by one unit of its 6th digit (5e-6 relative, twice: both
sides round): numbers are compared to REL = 2e-5, everything else (paths, classes, verdicts,
clusters, outlier flags, file names) exactly. In practice the files come out byte for byte equal.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
import ray
from cli.test_cli_patterns import brightness_model, folder  # noqa: F401 - fixtures, shared rather than copied
from cli.test_cli_triage import labelled  # noqa: F401 - a fixture

from gradcam_desktop import cli
from gradcam_desktop.core import ray_folder
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.runtime import import_tensorflow_quietly
from gradcam_desktop.core.triage import TRIAGE_FIELDS, read_labels

# Ray Data copies its DataContext attribute by attribute, through setters that warn about its own deprecated names.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")
REL = 2e-5  # see the module's docstring
TEXT_TRIAGE = ("image", "true_index", "true_name", "predicted_index", "predicted_name", "correct", "error")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """A local Ray instance for the module: the commands use it (``connected`` keeps an existing connection).
    TensorFlow's devices are set up first: its one-time CUDA probe line on stderr is not a command's output."""
    import_tensorflow_quietly().zeros(1)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


def run(capture, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capture.readouterr()
    return code, out, err


def table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def assert_same_rows(local: list[dict], distributed: list[dict], text: tuple[str, ...]) -> None:
    """Row for row: the ``text`` columns equal, the others equal as numbers to REL (blank = blank)."""
    assert len(local) == len(distributed) and local
    for mine, theirs in zip(local, distributed, strict=True):
        assert mine.keys() == theirs.keys()
        for name in mine:
            if name in text or not mine[name] or not theirs[name]:
                assert mine[name] == theirs[name], (name, mine, theirs)
            else:
                assert float(theirs[name]) == pytest.approx(float(mine[name]), rel=REL, abs=1e-12), (name, mine)


@pytest.fixture(scope="module")
def many(labelled, tmp_path_factory) -> Path:  # noqa: F811 - the imported fixture
    """test_cli_triage's folder four times over (hard links, 40 pictures: two groups of 32), a file that
    is no picture and a class folder that links nowhere (two error rows, the second one made by the driver's
    read_labels)."""
    root = tmp_path_factory.mktemp("many")
    for picture in sorted(labelled.rglob("*.png")):
        (root / picture.parent.name).mkdir(exist_ok=True)
        for k in range(4):
            os.link(picture, root / picture.parent.name / f"{picture.stem}-{k}.png")
    (root / "circle" / "broken.png").write_bytes(b"not a picture")
    (root / "triangle").symlink_to(root / "gone")  # class 2 by name; "2" holds its pictures
    return root


def test_triage_rows_tables_and_maps_are_the_local_runs(capfd, tmp_path, many):
    code, local_out, local_err = run(capfd, "triage", "--model", "demo", "--out-dir", tmp_path / "local", "--json", many)
    assert code == 1  # the broken file and folder
    code, ray_out, ray_err = run(capfd, "triage", many, "--model", "demo", "--out-dir", tmp_path / "ray", "--json",
                                 "--ray")
    assert code == 1
    # Nothing from Ray on either stream, at the file descriptors: the same skipped lines (in the order the
    # groups finish, which may not be the folder's), the same summary.
    assert sorted(ray_err.splitlines()) == sorted(local_err.splitlines())
    assert [line.split(" ")[0] for line in ray_err.splitlines()] == ["Skipped:"] * 2
    assert json.loads(ray_out) == json.loads(local_out) and json.loads(ray_out)["unreadable_folders"] == 1
    local, distributed = table(tmp_path / "local" / "triage.csv"), table(tmp_path / "ray" / "triage.csv")
    assert list(distributed[0]) == TRIAGE_FIELDS and len(distributed) == 42
    assert_same_rows(local, distributed, TEXT_TRIAGE)
    assert [r["error"] != "" for r in distributed].count(True) == 2
    assert (tmp_path / "ray" / "confusion.csv").read_bytes() == (tmp_path / "local" / "confusion.csv").read_bytes()
    # The mistakes' maps are drawn by this process's engine from the rows: the same files.
    maps = sorted(p.name for p in (tmp_path / "local" / "maps").iterdir())
    assert maps and sorted(p.name for p in (tmp_path / "ray" / "maps").iterdir()) == maps
    for name in maps:
        assert (tmp_path / "ray" / "maps" / name).read_bytes() == (tmp_path / "local" / "maps" / name).read_bytes()


def test_patterns_tables_and_cluster_pictures_are_the_local_runs(capsys, tmp_path, brightness_model,  # noqa: F811
                                                                 folder):  # noqa: F811
    labelled_folder, masks = folder
    common = ["-m", brightness_model, "--layer", "feat", "--masks", masks, "--json"]
    code, local_out, local_err = run(capsys, "patterns", *common, "--out-dir", tmp_path / "local", labelled_folder)
    assert code == 0, local_err
    code, ray_out, ray_err = run(capsys, "patterns", *common, "--out-dir", tmp_path / "ray", labelled_folder, "--ray")
    assert code == 0 and ray_err == local_err == ""
    local_report, ray_report = json.loads(local_out), json.loads(ray_out)
    for report in (local_report, ray_report):
        for cluster in report["clusters"]:
            cluster["picture"] = Path(cluster["picture"]).name
    assert ray_report["pictures"] == local_report["pictures"] == 24
    shares = [(c.pop("mean_inside_share"), d.pop("mean_inside_share"))
              for c, d in zip(local_report["clusters"], ray_report["clusters"], strict=True)]
    assert ray_report == local_report and all(b == pytest.approx(a, rel=REL) for a, b in shares)
    assert_same_rows(table(tmp_path / "local" / "patterns.csv"), table(tmp_path / "ray" / "patterns.csv"),
                     ("image", "class", "cluster", "outlier"))
    assert_same_rows(table(tmp_path / "local" / "clusters.csv"), table(tmp_path / "ray" / "clusters.csv"),
                     ("class", "cluster", "size", "outlier"))
    pictures = sorted(p.name for p in (tmp_path / "local" / "clusters").iterdir())
    assert len(pictures) >= 2 and sorted(p.name for p in (tmp_path / "ray" / "clusters").iterdir()) == pictures


def test_a_worker_that_cannot_open_the_model_stops_the_run_in_one_line(tmp_path, labelled):  # noqa: F811
    pictures = read_labels(labelled, load_model("demo").class_names).pictures
    gone = ray_folder.WorkerModel(str(tmp_path / "gone.keras"))  # opened on the driver, missing on the workers
    with pytest.raises(ray_folder.ClusterError) as raised, ray_folder.connected():
        list(ray_folder.triage_rows(pictures, gone))
    message = str(raised.value)
    assert message.startswith("A Ray worker could not open the model: ") and "gone.keras" in message
    assert "\n" not in message


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("command", ["triage", "patterns"])
def test_a_bad_address_is_one_line_before_the_model_opens(capsys, tmp_path, labelled, command):  # noqa: F811
    port = _free_port()  # nothing listens there
    for address, words in ((f"127.0.0.1:{port}", f"Cannot reach Ray at 127.0.0.1:{port}: connection refused."),
                           ("ray://127.0.0.1:10001", "Ray Data does not run over Ray Client"),
                           ("head", "is not an address Ray takes")):
        code, out, err = run(capsys, command, labelled, "-m", "demo", "--out-dir", tmp_path / "o", f"--ray={address}")
        assert code == 1 and out == "" and words in err and len(err.splitlines()) == 1, err
        assert err.startswith("Error: ") and not (tmp_path / "o").exists()


def test_without_the_extra_one_line_says_what_to_install(capsys, monkeypatch, tmp_path, labelled):  # noqa: F811
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does without the extra
    for command in ("triage", "patterns"):
        code, out, err = run(capsys, command, labelled, "-m", "demo", "--out-dir", tmp_path / "o", "--ray")
        assert (code, out, err) == (1, "", f"Error: {ray_folder.RAY_MISSING}\n")
        assert not (tmp_path / "o").exists()
