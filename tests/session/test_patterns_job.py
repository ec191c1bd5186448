"""The Patterns job (session/patterns_job.py) stepped by hand on the real engine: what it sends,
that its clusters are the core's, that Cancel and another model leave nothing clustered, and that
the report it writes is the page ``gradcam report`` makes of the same analysis."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import patterns_factory
import pytest
from patterns_factory import CENTRED, WATERMARKED

from gradcam_desktop.core import cams
from gradcam_desktop.core.folder_patterns import PatternsRun
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.triage import read_labels
from gradcam_desktop.session.patterns_job import PatternsRequest


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    model = patterns_factory.brightness_model(tmp_path_factory.mktemp("job_model"))
    labelled, _masks = patterns_factory.watermark_folder(tmp_path_factory.mktemp("job_data"))
    return GradCam(load_model(str(model))), labelled


def _steps(job, limit: int = 100) -> int:
    for count in range(1, limit):
        if not job.step():
            return count
    raise AssertionError("the job did not end")


def test_the_clusters_sent_are_the_cores(planted):
    engine, labelled = planted
    sent = []
    maker = SimpleNamespace(engine=engine, generation=1)
    job = PatternsRequest(str(labelled), layer="feat").start_job(maker, lambda _id, part: sent.append(part))
    steps = _steps(job)
    kinds = [kind for kind, _data in sent]
    assert kinds == ["started", "clusters"] and sent[0][1]["total"] == CENTRED + WATERMARKED
    assert steps == 1 + -(-(CENTRED + WATERMARKED) // 16) + 1  # the labels, a step a group of 16, the clustering
    found = sent[1][1]
    direct = PatternsRun(engine, read_labels(str(labelled), engine.class_names).pictures,
                         method=cams.method("gradcam"), layer="feat")
    while direct.step():
        pass
    expected = direct.finish()
    assert [m.image for m in found.analysis.done] == [m.image for m in expected.done]
    assert np.array_equal(found.analysis.clusterings[0].labels, expected.clusterings[0].labels)
    assert np.allclose(found.analysis.features, expected.features)
    assert all(m.features.size == 0 for m in found.analysis.done)  # the grids cross once, in `features`
    for (c, k), mean in found.means.items():
        members = expected.features[expected.class_rows(c)][expected.clusterings[c].labels == k]
        assert np.allclose(mean, members.mean(axis=0).reshape(32, 32), atol=1e-7)
    assert job.summary() == {"cancelled": False, "pictures": CENTRED + WATERMARKED}


@pytest.mark.parametrize("stop", ["cancel", "another model"])
def test_a_stopped_run_clusters_nothing(planted, stop):
    engine, labelled = planted
    sent = []
    maker = SimpleNamespace(engine=engine, generation=1)
    job = PatternsRequest(str(labelled), layer="feat").start_job(maker, lambda _id, part: sent.append(part))
    assert job.step() and job.step()  # the labels, the first group
    if stop == "cancel":
        job.cancel()
    else:
        maker.generation = 2
    assert not job.step()
    assert [kind for kind, _d in sent] == ["started"] and job.summary()["cancelled"]


def test_the_report_from_an_analysis_already_made(planted, tmp_path):
    engine, labelled = planted
    sent = []
    maker = SimpleNamespace(engine=engine, generation=1)
    first = PatternsRequest(str(labelled), layer="feat").start_job(maker, lambda _id, part: sent.append(part))
    _steps(first)
    found = sent[-1][1]
    out = tmp_path / "page.html"
    report = PatternsRequest(str(labelled), layer="feat", report=str(out), model="bright.keras",
                             analysis=found.analysis).start_job(maker, lambda _id, part: sent.append(part))
    assert _steps(report) == 1  # no mapping: straight to the page
    assert sent[-1] == ("report", str(out))
    page = out.read_text(encoding="utf-8")
    assert "bright.keras" in page and page.count("data:image/png;base64,") >= len(found.analysis.cluster_rows)


def test_without_a_model_the_request_is_refused():
    from gradcam_desktop.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="Open a model first"):
        PatternsRequest("x").start_job(SimpleNamespace(engine=None, generation=0), lambda *_a: None)
