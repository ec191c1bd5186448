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


# -- issue 17: an "against" or "rather than" map is read as one ----------------------------------------
def against(deletion, insertion, original, masked, random=(None, None)) -> TrustReport:
    r = report(deletion, insertion, original=original, masked=masked, random=random)
    r.kind = "counterfactual"
    return r


def test_an_against_map_whose_removal_raises_the_class_is_green_and_says_so():
    # The map shows what speaks against 'star': deleting it first makes p('star') jump 0.1 → 0.9.
    # Read as a "for" map that would be red (AUC 0.7 ≫ p(X) = 0.1); read against, 1 − p has
    # AUC (1.1 − 0.5)/2 = 0.3 ≤ ½ · 0.9: green.
    curves = ([0.1, 0.9, 0.9], [0.9, 0.1, 0.1])
    assert v.verdicts(report(*curves, original=0.1, masked=0.05), "star")["deletion"].light == v.RED
    found = v.verdicts(against(*curves, original=0.1, masked=0.05), "star")
    assert found["deletion"].light == v.GREEN and "against 'star'" in found["deletion"].sentence
    assert "turn to 'star' quickly" in found["deletion"].sentence
    assert "what the model uses" not in " ".join(x.sentence for x in found.values())
    # Insertion: showing the against-evidence first keeps 'star' down (1 − p back at once): green.
    assert found["insertion"].light == v.GREEN and "keeps 'star' down" in found["insertion"].sentence
    # Average Drop: keeping only that evidence makes the model even less sure of 'star'.
    assert found["average_drop"].light == v.GREEN and "even less sure of 'star'" in found["average_drop"].sentence
    assert v.drop_figure(against(*curves, original=0.1, masked=0.05)) == "falls 10 % → 5 %"


@pytest.mark.parametrize(("ratio", "light"), [(0.49, v.GREEN), (0.51, v.YELLOW), (0.86, v.RED)])
def test_against_deletion_judges_one_minus_p_with_the_same_thresholds(ratio, light):
    # A constant p-curve c has 1 − p area 1 − c: pick 1 − c = ratio · (1 − p(X)).
    original = 0.2
    r = against([1 - 0.8 * ratio] * 3, [0.5] * 3, original=original, masked=0.2)
    assert v.verdicts(r, "a")["deletion"].light == light
    assert v.verdicts(r, "a")["deletion"].sentence.startswith("Removing the map's hottest parts first")


def test_against_insertion_with_a_baseline_must_stay_below_random_pixels():
    # p-curves: random order 0.6; the map's order must keep p lower by 0.1 · (1 − p(X)).
    low = against([0.5] * 3, [0.6 - 0.1 * 0.8 - 1e-9] * 3, original=0.2, masked=0.2, random=(0.5, 0.6))
    high = against([0.5] * 3, [0.65] * 3, original=0.2, masked=0.2, random=(0.5, 0.6))
    assert v.verdicts(low, "a")["insertion"].light == v.GREEN
    assert v.verdicts(high, "a")["insertion"].light == v.RED


def test_against_average_drop_reads_a_rise_of_the_class_and_its_figure_agrees():
    # Keeping only what speaks against 'a' lifts p('a') 0.1 → 0.4: 1 − p drops 0.9 → 0.6, by 33 %.
    r = against([0.5] * 3, [0.5] * 3, original=0.1, masked=0.4)
    verdict = v.verdicts(r, "a")["average_drop"]
    assert verdict.light == v.YELLOW
    assert "rises from 10 % to 40 %" in verdict.sentence and "drops by 33 %" in verdict.sentence
    assert v.drop_figure(r) == "rises 10 % → 40 %"


@pytest.mark.parametrize(("original", "masked", "figure", "said"), [
    (0.9, 0.3, "drops 67 %", "drops by 67 %"),
    (0.8, 0.9, "rises 12 %", "rises by 12 %"),
])
def test_average_drop_figure_and_sentence_agree_in_sign_and_words(original, masked, figure, said):
    r = report([0.5] * 3, [0.5] * 3, original=original, masked=masked)
    assert v.drop_figure(r) == figure and said in v.verdicts(r, "a")["average_drop"].sentence
    assert "−" not in v.drop_figure(r) and "-" not in v.drop_figure(r)


def test_a_rather_than_map_names_both_classes():
    r = report([0.9, 0.0, 0.0], [0.0, 0.9, 0.9], original=0.9, masked=0.85)
    r.kind = "versus"
    found = v.verdicts(r, "circle", "star")
    assert found["deletion"].light == v.GREEN
    for key in ("deletion", "insertion", "average_drop"):
        assert "'circle'" in found[key].sentence and "'star'" in found[key].sentence, key
    assert v.quantity("versus", "circle", "star") == "share of 'circle' vs 'star'"
    assert v.BETTER["counterfactual"] == {"deletion": "higher", "insertion": "lower"}
