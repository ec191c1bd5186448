"""The trust figures in plain words: a traffic light and one sentence each (CLI and window).

The thresholds are rules of thumb, not statistics: they say how a figure compares with what
"no information" would give — the model's own confidence on the untouched picture, and for
insertion the same curve with pixels in random order when it was computed. Deletion is never
judged against its random order: blacking out scattered pixels wrecks any picture at once (the
random-order area was 0.01–0.06 on most sample pictures), so that reference would call nearly
every map poor. The words are written here once, so the window and ``gradcam trust`` agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .trust import TrustReport

__all__ = ["GREEN", "RED", "YELLOW", "Verdict", "verdicts"]

GREEN, YELLOW, RED = "green", "yellow", "red"
#: Deletion AUC at most this fraction of the model's confidence: the map finds what the model uses.
DELETION_GOOD, DELETION_WEAK = 0.5, 0.85
#: Insertion AUC at least this fraction of the model's confidence (no baseline) …
INSERTION_GOOD, INSERTION_WEAK = 0.7, 0.4
#: … or this far above the random order, as a fraction of the confidence (with a baseline).
INSERTION_MARGIN = 0.1
#: Average Drop (%) at most this: the highlighted parts alone keep the model's belief.
DROP_GOOD, DROP_WEAK = 20.0, 50.0
#: |Spearman| after every layer is re-drawn at most this: the map depends on the learned weights.
SANITY_GOOD, SANITY_WEAK = 0.3, 0.6


@dataclass(frozen=True)
class Verdict:
    light: str  # GREEN | YELLOW | RED
    sentence: str


def verdicts(report: TrustReport, class_name: str) -> dict[str, Verdict]:
    """One verdict per figure: "deletion", "insertion", "average_drop" and (when run) "sanity"."""
    name = f"'{class_name}'"
    result = {
        "deletion": _deletion(report, name),
        "insertion": _insertion(report, name),
        "average_drop": _average_drop(report, name),
    }
    if report.sanity:
        result["sanity"] = _sanity(report)
    return result


def _light(good: bool, weak: bool) -> str:
    return GREEN if good else YELLOW if weak else RED


def _deletion(report: TrustReport, name: str) -> Verdict:
    reference = report.original
    if reference <= 0:
        return Verdict(YELLOW, f"The model gives {name} no probability to lose: deletion says nothing here.")
    ratio = report.deletion_auc / reference
    light = _light(ratio <= DELETION_GOOD, ratio <= DELETION_WEAK)
    if light == GREEN:
        return Verdict(light, f"Removing the map's hottest parts first makes the model lose {name} quickly: "
                              "the map points at what the model uses.")
    if light == YELLOW:
        return Verdict(light, f"Removing the map's hottest parts first lowers the model's belief in {name}, but slowly: "
                              "the map finds some of what the model uses.")
    return Verdict(light, f"Removing the map's hottest parts first hardly changes the model's belief in {name}: "
                          "the map may not show what the model uses.")


def _insertion(report: TrustReport, name: str) -> Verdict:
    auc, confidence = report.insertion_auc, report.original
    if report.random_insertion_auc is not None:
        good = auc >= report.random_insertion_auc + INSERTION_MARGIN * confidence
        weak = auc >= report.random_insertion_auc
    else:
        good, weak = auc >= INSERTION_GOOD * confidence, auc >= INSERTION_WEAK * confidence
    light = _light(good, weak)
    if light == GREEN:
        return Verdict(light, f"Showing the map's hottest parts first on a blurred picture brings {name} back quickly: "
                              "they are enough for the model.")
    if light == YELLOW:
        return Verdict(light, f"Showing the hottest parts first brings {name} back only slowly: "
                              "the model needs more than what the map highlights.")
    return Verdict(light, f"Showing the hottest parts first brings {name} back no faster than random pixels: "
                          "the map does not find what the model needs.")


def _average_drop(report: TrustReport, name: str) -> Verdict:
    drop = report.average_drop
    if report.increase_in_confidence:
        return Verdict(GREEN, f"Keeping only what the map highlights makes the model even surer of {name}.")
    light = _light(drop <= DROP_GOOD, drop <= DROP_WEAK)
    tail = {GREEN: "the highlighted parts carry the model's decision.",
            YELLOW: "the highlighted parts carry part of the decision.",
            RED: "the model needs more than the highlighted parts."}[light]
    return Verdict(light, f"Keeping only what the map highlights, the model's confidence in {name} drops by "
                          f"{drop:.0f} %: {tail}")


def _sanity(report: TrustReport) -> Verdict:
    last = report.sanity[-1].spearman
    if not math.isfinite(last):
        return Verdict(GREEN, "With the model's weights replaced by random ones the map vanishes: "
                              "it depends on what the model learned.")
    light = _light(abs(last) <= SANITY_GOOD, abs(last) <= SANITY_WEAK)
    if light == GREEN:
        return Verdict(light, "With the model's weights replaced by random ones the map changes completely: "
                              "it depends on what the model learned.")
    if light == YELLOW:
        return Verdict(light, "With random weights the map still looks partly the same: part of it may come "
                              "from the picture's edges rather than from what the model learned.")
    return Verdict(light, "The map stays much the same even with random weights: it shows the picture's "
                          "edges, not what the model learned. Do not trust it.")
