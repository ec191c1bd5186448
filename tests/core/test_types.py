"""ModelSpec (the one parser of model names) and MapResult's record forms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradcam_desktop.core.types import CSV_FIELDS, MapResult, ModelSpec, Prediction


@pytest.mark.parametrize("text,kind,value,label,canonical", [
    ("demo", "demo", "demo", "Demo model", "demo"),
    ("zoo:ResNet50", "zoo", "ResNet50", "zoo:ResNet50", "zoo:ResNet50"),
    ("/data/models/cats.keras", "file", "/data/models/cats.keras", "cats.keras", "/data/models/cats.keras"),
    ("relative/dir/m.h5", "file", "relative/dir/m.h5", "m.h5", "relative/dir/m.h5"),
    ("demo.keras", "file", "demo.keras", "demo.keras", "demo.keras"),  # a file named like the demo
])
def test_model_spec_parses_demo_zoo_and_paths(text, kind, value, label, canonical):
    spec = ModelSpec.parse(text)
    assert (spec.kind, spec.value, spec.label, str(spec)) == (kind, value, label, canonical)
    assert ModelSpec.parse(spec) is spec and ModelSpec.parse(str(spec)) == spec
    assert spec.is_file == (kind == "file") and (spec.path is not None) == spec.is_file


def test_model_spec_expands_the_home_folder():
    spec = ModelSpec.parse("~/m.keras")
    assert spec.path == Path.home() / "m.keras"
    assert ModelSpec.parse(Path("/x/y.keras")).label == "y.keras"


def _result(**changes) -> MapResult:
    prediction = Prediction(probabilities=np.array([0.1, 0.7, 0.2]), top=[(1, "dog", 0.7), (2, "bird", 0.2),
                                                                             (0, "cat", 0.1)], head="softmax")
    result = MapResult(raw=np.zeros((3, 4), np.float32), layer="backbone/last_conv", class_index=2,
                       class_name="bird", score=0.2, prediction=prediction, seconds=0.123456,
                       model="demo", preprocess="unit", image="/pics/a.png")
    return result.with_(**changes)


def test_record_csv_row_and_sidecar_agree():
    result = _result(method="gradcam", flat=True)
    record, row = result.record(), result.csv_row()
    assert set(row) == set(CSV_FIELDS)
    assert (record["class_index"], record["class_name"], record["layer"], record["method"]) == (
        int(row["explained_index"]), row["explained_name"], row["layer"], row["method"]) == (
        2, "bird", "backbone/last_conv", "gradcam")
    assert (record["predicted_index"], record["predicted_name"]) == (1, "dog") == (
        row["predicted_index"], row["predicted_name"])
    assert record["heatmap_shape"] == [3, 4] and record["flat"] is True and record["seconds"] == 0.1235
    sidecar = result.sidecar(image_size=(30, 40), alpha=0.4, colormap="turbo", versions={"app": "1", "x": 2},
                             files={"overlay": "a.png"})
    assert {k: sidecar[k] for k in record} == record
    assert sidecar["image_size"] == {"height": 30, "width": 40} and sidecar["versions"] == {"app": "1"}
    assert "own maximum" in sidecar["scale"] and sidecar["files"] == {"overlay": "a.png"}


def test_with_changes_fields_and_shares_arrays():
    result = _result()
    copy = result.with_(request_id=7, cached=True)
    assert copy.raw is result.raw and (copy.request_id, copy.cached) == (7, True)
    assert (result.request_id, result.cached) == (0, False)
