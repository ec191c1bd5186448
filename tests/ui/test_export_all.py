"""Export All from the window: the same pictures, sidecars and results.csv as ``gradcam batch``.

The end-to-end tests drive the real MainWindow with the demo model and compare its folder with
one written by the CLI (``gradcam_desktop.cli.main``) for the same pictures, layer and class.
The glue test drives ``export_all.py`` with a stand-in worker, so the progress dialog's Cancel
and the final report are checked without racing a fast model.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QListView, QProgressDialog, QPushButton, QSlider, QWidget

from gradcam_desktop.cli import main as cli_main
from gradcam_desktop.core.batch import OutputStyle
from gradcam_desktop.core.types import CSV_FIELDS
from gradcam_desktop.ui import MainWindow
from gradcam_desktop.ui.export_all import ExportAllRun, report_text, start_export_all
from gradcam_desktop.session.records import Picture

TIMEOUT = 60_000
SAMPLES = Path(__file__).resolve().parents[2] / "images"
#: results.csv prints probabilities with 6 decimals. Both runs do the same float32 computation on
#: the same pixels, so they may differ by one step of the last printed digit (1e-6) plus float32
#: rounding of a probability ≤ 1 (≤ 1.2e-7), never more.
PROBABILITY_TOLERANCE = 1e-6 + 1.2e-7
PROBABILITY_COLUMNS = ("probability", "explained_probability")


def score_tolerance(picture: Path, layer: str, printed: float) -> float:
    """How far the two runs' explained_score (a logit y_c, printed with 6 significant digits) may differ.

    Export All computes one picture per call, the CLI groups of pictures: other batch shapes, other
    summation orders in the kernels. Each forward pass is within ρ = pass_error(model) of exact
    for every logit, relative to the logits' magnitude (tests/reference.py: |Δz| ≤ (ρ + u)(max|z| +
    mean|z|)), so the two differ by at most twice that, plus one step of the 6th printed digit.
    """
    from reference import U32, discrepancy

    from gradcam_desktop.core.gradcam import GradCam
    from gradcam_desktop.core.images import load_image
    from gradcam_desktop.core.models import load_model

    engine = GradCam(load_model("demo"))
    image = load_image(picture)
    logits = engine.capture(layer).run(engine.model_input(image), [[0.0] * engine.head.units]).logits[0]
    z = abs(logits.astype("float64"))
    step = 10.0 ** (int(f"{abs(printed):e}".split("e")[1]) - 5) if printed else 0.0
    return (discrepancy(engine.model) + 2 * U32) * (z.max() + z.mean()) + step


@pytest.fixture
def pictures(tmp_path) -> list[Path]:
    """Four demo pictures, two of them named star.png (so the stems must be made unique)."""
    folder = tmp_path / "pictures"
    (folder / "more").mkdir(parents=True)
    paths = [folder / "circle.png", folder / "star.png", folder / "triangle.png", folder / "more" / "star.png"]
    for path, sample in zip(paths, ["circle.png", "star.png", "triangle.png", "two_objects_circle_star.png"],
                            strict=True):
        shutil.copy(SAMPLES / sample, path)
    return paths


@pytest.fixture
def window(qtbot, pictures):
    """The real window with the demo model and the pictures open, the first map shown."""
    w = MainWindow()
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.acts.open_model.isEnabled(), timeout=TIMEOUT)
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
        w.open_model("demo")
        w.open_images(pictures)
    return w


def _table(folder: Path) -> tuple[list[str], list[dict]]:
    with open(folder / "results.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def _export(qtbot, window, folder: Path) -> dict:
    run = window.export_all(folder)
    assert isinstance(run, ExportAllRun)
    qtbot.waitUntil(run.is_done, timeout=TIMEOUT)
    return run.summary()


def _choose(qtbot, window, layer: str, class_index: int) -> None:
    """Pick a layer and a class as a user does (tree selection, class list selection)."""
    tree = window.findChild(QWidget, "layerTree")
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT, check_params_cb=lambda r: r.layer == layer):
        tree.setCurrentIndex(tree.model().index_for_path(layer))
    view = window.findChild(QListView, "classList")
    proxy = view.model()
    row = next(r for r in range(proxy.rowCount()) if proxy.index(r, 0).data(Qt.ItemDataRole.UserRole) == class_index)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT,
                          check_params_cb=lambda r: r.class_index == class_index):
        view.setCurrentIndex(proxy.index(row, 0))


@pytest.mark.parametrize("choice", [None, ("block3_conv", 3)], ids=["defaults", "chosen-layer-and-class"])
def test_export_all_writes_what_gradcam_batch_writes(qtbot, window, pictures, tmp_path, choice):
    if choice is None:
        layer, class_args = window.shown_result().layer, []
    else:
        layer, class_index = choice
        _choose(qtbot, window, layer, class_index)
        class_args = ["--class", str(class_index)]
    out = tmp_path / "window"
    summary = _export(qtbot, window, out)
    assert summary["written"] == 4 and summary["failures"] == [] and not summary["cancelled"]
    assert summary["folder"] == str(out) and summary["csv"] == str(out / "results.csv")
    assert str(out) in window.findChild(QLabel, "statusMessage").text()

    cli = tmp_path / "cli"
    code = cli_main(["batch", "--model", "demo", "--layer", layer, *class_args, "--out-dir", str(cli),
                     *map(str, pictures)])
    assert code == 0

    # The same files: a picture and a sidecar per picture (unique stems), and the table.
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in cli.iterdir())
    assert len([n for n in names if n.endswith(".png")]) == 4 and "results.csv" in names

    fields, rows = _table(out)
    cli_fields, cli_rows = _table(cli)
    assert fields == cli_fields == CSV_FIELDS
    assert [r["image"] for r in rows] == [str(p) for p in pictures]
    for row, cli_row in zip(rows, cli_rows, strict=True):
        for column in CSV_FIELDS:
            if column == "seconds":
                continue
            if column in PROBABILITY_COLUMNS:
                assert float(row[column]) == pytest.approx(float(cli_row[column]), abs=PROBABILITY_TOLERANCE)
            elif column == "explained_score":
                tolerance = score_tolerance(Path(row["image"]), layer, float(cli_row[column]))
                assert abs(float(row[column]) - float(cli_row[column])) <= tolerance, column
            else:
                assert row[column] == cli_row[column], column
        assert row["layer"] == layer and row["method"] == "gradcam" and row["error"] == ""
        if choice is not None:
            assert row["explained_index"] == str(choice[1])

    # Each sidecar says what its picture shows, as its row does and as the CLI's sidecar does.
    sidecars = sorted(out.glob("*.json"))
    assert len(sidecars) == 4
    by_image = {row["image"]: row for row in rows}
    for path in sidecars:
        sidecar = json.loads(path.read_text(encoding="utf-8"))
        cli_sidecar = json.loads((cli / path.name).read_text(encoding="utf-8"))
        assert set(sidecar) == set(cli_sidecar)
        row = by_image[sidecar["image"]]
        assert (str(sidecar["class_index"]), sidecar["class_name"], sidecar["layer"], sidecar["method"]) == (
            row["explained_index"], row["explained_name"], row["layer"], row["method"])
        assert sidecar["files"] == {"overlay": path.with_suffix(".png").name}
        assert sidecar["model"] == "demo" and sidecar["model_name"] == cli_sidecar["model_name"]
        assert sidecar["versions"]["tensorflow"] and sidecar["versions"]["qt"]  # the window adds its own
        picture = cv2.imread(str(path.with_suffix(".png")))
        assert picture.shape[:2] == (sidecar["image_size"]["height"], sidecar["image_size"]["width"])
        assert picture.shape == cv2.imread(str(cli / path.with_suffix(".png").name)).shape


def test_export_all_takes_the_windows_alpha_and_colormap(qtbot, window, tmp_path):
    window.findChild(QSlider, "alphaSlider").setValue(80)
    window.findChild(QComboBox, "colormapBox").setCurrentText("viridis")
    out = tmp_path / "styled"
    assert _export(qtbot, window, out)["written"] == 4
    sidecar = json.loads(next(out.glob("*.json")).read_text(encoding="utf-8"))
    assert sidecar["alpha"] == pytest.approx(0.8) and sidecar["colormap"] == "viridis"


def test_export_all_into_a_folder_that_cannot_exist(qtbot, window, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the folder should be")
    with qtbot.waitSignal(window.errorShown, timeout=TIMEOUT) as shown:
        summary = _export(qtbot, window, blocker / "out")
    assert summary["written"] == 0 and summary["csv"] == ""
    assert "Cannot create the output folder" in shown.args[0] and str(blocker / "out") in shown.args[0]


# -- the glue, with a stand-in worker --------------------------------------------------------
class FakeWorker(QObject):
    jobProgress = Signal(int, int, int, str)
    jobFinished = Signal(int, dict)
    failed = Signal(int, str)

    def __init__(self):
        super().__init__()
        self.asked, self.cancelled = [], []

    def export_all(self, image_keys, folder, *, layer, class_index, style, method="gradcam"):
        self.asked.append({"keys": image_keys, "folder": folder, "layer": layer, "class_index": class_index,
                           "style": style, "method": method})
        return 77

    def cancel_job(self, job_id):
        self.cancelled.append(job_id)


class FakeWindow(QWidget):
    """What start_export_all reads of a window: worker, pictures, output style, messages."""

    def __init__(self):
        super().__init__()
        self.worker = FakeWorker()
        self.errors, self.statuses = [], []

    def output_style(self):
        return OutputStyle(alpha=0.3, colormap="turbo", sidecar_extra={"versions": {"app": "1.0"}})

    def images(self):
        return [Picture("img1", "a.png"), Picture("img2", "b.png")]

    def show_error(self, message, title="Grad-CAM Desktop"):
        self.errors.append((title, message))

    def set_status(self, text):
        self.statuses.append(text)


def _decorate(picture, _result):
    return picture


def test_the_dialogs_cancel_cancels_the_job_and_the_report_names_folder_and_failures(qtbot, monkeypatch,
                                                                                     tmp_path):
    monkeypatch.setenv("GRADCAM_DESKTOP_NO_DIALOGS", "0")
    window = FakeWindow()
    qtbot.addWidget(window)
    run = start_export_all(window, tmp_path, layer="conv", class_index=2, decorate=_decorate)
    asked = window.worker.asked[0]
    assert run.job_id == 77 and asked["keys"] == ["img1", "img2"] and asked["folder"] == tmp_path
    assert (asked["layer"], asked["class_index"]) == ("conv", 2)
    style = asked["style"]
    assert style.alpha == pytest.approx(0.3) and style.colormap == "turbo" and style.decorate is _decorate
    assert style.sidecar_extra == {"versions": {"app": "1.0"}}

    dialog = window.findChild(QProgressDialog)
    assert dialog is not None and dialog.maximum() == 2
    window.worker.jobProgress.emit(76, 2, 9, "other job")  # another job's progress is not ours
    window.worker.jobProgress.emit(77, 1, 2, "b.png")
    assert dialog.value() == 1 and dialog.labelText() == "Exporting b.png…"
    assert window.statuses[-1] == "Exporting 1 of 2…"

    dialog.findChild(QPushButton).click()  # the dialog's Cancel button
    assert window.worker.cancelled == [77] and not run.is_done()  # done when the worker says so
    run.cancel()
    assert window.worker.cancelled == [77]  # asked once
    failures = [("b.png", "Cannot write b.png: disk full.")]
    with qtbot.waitSignal(run.finished, timeout=1000):
        window.worker.jobFinished.emit(77, {"written": 1, "failures": failures, "cancelled": True,
                                            "folder": str(tmp_path), "csv": str(tmp_path / "results.csv")})
    assert run.is_done() and run.summary()["cancelled"]
    title, message = window.errors[-1]
    assert title == "Export All"
    assert message == (f"Exported 1 picture to {tmp_path}, with results.csv (cancelled). "
                       "1 failed: b.png: Cannot write b.png: disk full.")
    assert not dialog.isVisible()
    window.worker.jobFinished.emit(77, {"written": 5})  # a second end changes nothing
    assert run.summary()["written"] == 1


def test_an_export_that_cannot_start_reports_the_workers_message(qtbot, tmp_path):
    window = FakeWindow()
    qtbot.addWidget(window)
    run = start_export_all(window, tmp_path, layer=None, class_index=None)
    window.worker.failed.emit(12, "someone else's failure")
    assert not run.is_done()
    window.worker.failed.emit(77, "Open a model first.")
    assert run.is_done() and window.errors[-1] == ("Export All", "Open a model first.")


def test_report_text_without_failures():
    text = report_text({"written": 3, "failures": [], "cancelled": False, "folder": "/out", "csv": "/out/results.csv"})
    assert text == "Exported 3 pictures to /out, with results.csv."
    many = [(f"p{i}.png", "bad") for i in range(5)]
    text = report_text({"written": 0, "failures": many, "cancelled": False, "folder": "/out", "csv": ""})
    assert text == ("Exported 0 pictures to /out. 5 failed: p0.png: bad; p1.png: bad; p2.png: bad (and 2 more)")
