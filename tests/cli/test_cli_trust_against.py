"""Issue 17 on the command line: `gradcam trust --counterfactual` reads the map as one against the class."""

from __future__ import annotations

import json
from pathlib import Path

from gradcam_desktop.cli import main
from gradcam_desktop.core import trust
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.verdicts import drop_figure, verdicts

PICTURE = Path(__file__).resolve().parents[2] / "images" / "two_objects_circle_star.png"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_counterfactual_trust_is_read_against_the_class(capsys):
    code, out, err = run(capsys, "trust", "--model", "demo", "--image", PICTURE, "--counterfactual", "--no-sanity",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["score_kind"] == "counterfactual"
    engine = GradCam(load_model("demo"))
    image = load_image(PICTURE)
    expected = trust.trust_report(engine, image, engine.explain(image, counterfactual=True), sanity=False)
    assert expected.kind == "counterfactual"
    words = verdicts(expected, data["class_name"])
    assert {k: x["light"] for k, x in data["verdicts"].items()} == {k: x.light for k, x in words.items()}
    assert all("what the model uses" not in x["sentence"] for x in data["verdicts"].values())

    code, out, err = run(capsys, "trust", "--model", "demo", "--image", PICTURE, "--counterfactual", "--no-sanity")
    assert code == 0, err
    assert out.splitlines()[0].startswith("Trust figures for Grad-CAM · against 'circle'")
    assert "Deletion AUC" in out and "(higher is better)" in out.split("Deletion AUC")[1].splitlines()[0]
    assert "(lower is better)" in out.split("Insertion AUC")[1].splitlines()[0]
    assert f"Average Drop: p('circle') {drop_figure(expected)}" in out
