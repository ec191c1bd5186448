"""The trust verdicts: each figure's light follows its documented threshold (core/verdicts.py)."""

import numpy as np
import pytest

from gradcam_desktop.core import verdicts as v
from gradcam_desktop.core.trust import SanityStep, TrustReport


def report(deletion, insertion, original=0.9, masked=0.8, sanity=(), random=(None, None)) -> TrustReport:
    steps = len(deletion) - 1
    return TrustReport(steps=steps, deletion_curve=np.array(deletion, float), insertion_curve=np.array(insertion, float),
                       original=original, masked=masked,
                       random_deletion_curve=None if random[0] is None else np.full(steps + 1, random[0]),
                       random_insertion_curve=None if random[1] is None else np.full(steps + 1, random[1]),
                       sanity=[SanityStep(["x"], rho, np.zeros((2, 2))) for rho in sanity])


def test_a_map_that_finds_the_evidence_is_green_everywhere():
    # Deletion drops at once: AUC 0.9/4 = 0.225 ≤ ½·0.9. Insertion jumps at once: 0.675 ≥ 0.7·0.9 = 0.63.
    r = report([0.9, 0.0, 0.0], [0.0, 0.9, 0.9], original=0.9, masked=0.85, sanity=[0.1])
    assert r.deletion_auc == pytest.approx(0.225) and r.insertion_auc == pytest.approx(0.675)
    found = v.verdicts(r, "star")
    assert {k: x.light for k, x in found.items()} == {"deletion": v.GREEN, "insertion": v.GREEN,
                                                       "average_drop": v.GREEN, "sanity": v.GREEN}
    assert "'star'" in found["deletion"].sentence and "quickly" in found["deletion"].sentence


def test_a_map_that_changes_nothing_is_red():
    r = report([0.9, 0.9, 0.9], [0.0, 0.0, 0.9], original=0.9, masked=0.1, sanity=[0.95])
    found = v.verdicts(r, "star")
    assert {k: x.light for k, x in found.items()} == {"deletion": v.RED, "insertion": v.RED,
                                                       "average_drop": v.RED, "sanity": v.RED}
    assert "Do not trust" in found["sanity"].sentence


@pytest.mark.parametrize(("ratio", "light"), [(0.49, v.GREEN), (0.51, v.YELLOW), (0.84, v.YELLOW), (0.86, v.RED)])
@pytest.mark.parametrize("random", [None, 0.01])
def test_deletion_compares_with_the_confidence_even_with_a_random_order(ratio, light, random):
    # A constant curve c has AUC c: pick c = ratio · p(X). A tiny random-order area (random
    # blackout wrecks any picture) must not make every map poor.
    r = report([0.8 * ratio] * 3, [0.5] * 3, original=0.8, random=(random, None))
    assert v.verdicts(r, "a")["deletion"].light == light


@pytest.mark.parametrize(("above", "light"), [(0.1 * 0.9 + 1e-9, v.GREEN), (0.05, v.YELLOW), (-0.01, v.RED)])
def test_insertion_with_a_baseline_needs_a_margin_over_random_pixels(above, light):
    r = report([0.1] * 3, [0.3 + above] * 3, original=0.9, random=(0.5, 0.3))
    assert v.verdicts(r, "a")["insertion"].light == light


@pytest.mark.parametrize(("masked", "light"), [(0.9 * 0.81, v.GREEN), (0.9 * 0.6, v.YELLOW), (0.9 * 0.4, v.RED),
                                               (0.95, v.GREEN)])
def test_average_drop_thresholds_and_increase_in_confidence(masked, light):
    verdict = v.verdicts(report([0.9] * 3, [0.9] * 3, original=0.9, masked=masked), "a")["average_drop"]
    assert verdict.light == light
    if masked > 0.9:
        assert "surer" in verdict.sentence


def test_sanity_is_judged_on_the_last_step_and_a_vanished_map_passes():
    assert v.verdicts(report([0.9] * 3, [0.9] * 3, sanity=[0.9, 0.5]), "a")["sanity"].light == v.YELLOW
    assert v.verdicts(report([0.9] * 3, [0.9] * 3, sanity=[0.9, float("nan")]), "a")["sanity"].light == v.GREEN
    assert "sanity" not in v.verdicts(report([0.9] * 3, [0.9] * 3), "a")
