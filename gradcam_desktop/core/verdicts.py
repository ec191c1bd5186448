"""The trust figures in plain words: a traffic light and one sentence each (CLI and window).

The thresholds are rules of thumb, not statistics: they say how a figure compares with what
"no information" would give — the model's own confidence on the untouched picture, and for
insertion the same curve with pixels in random order when it was computed. Deletion is never
judged against its random order: blacking out scattered pixels wrecks any picture at once (the
random-order area was 0.01–0.06 on most sample pictures), so that reference would call nearly
every map poor. The words are written here once, so the window and ``gradcam trust`` agree.

Each figure is read the way the map's score points (``TrustReport.kind``):

* **class**: the map shows what raises p(c): deleting it first should make p fall fast (a low
  deletion curve), showing it first should bring p back fast (a high insertion curve), keeping
  only it should keep p (a small Average Drop).
* **versus** ("c rather than B"): the same, with p the class's share of the two (``core.trust``):
  the map shows what makes the model choose c over B.
* **counterfactual** ("against c"): the map shows what LOWERS p(c). Deleting it first should make
  p(c) RISE (a high deletion curve), showing it first on a blurred picture should keep p(c) DOWN
  (a low insertion curve), and keeping only it should not make the model believe c (p(c) does
  not rise). That is the class reading of 1 − p(c), the belief that it is not c, so the same
  thresholds judge the curves of 1 − p (``as_evidence``); the sentences speak of p(c).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .trust import SCORE_HEADS, TrustReport

__all__ = ["BETTER", "GREEN", "RED", "YELLOW", "Verdict", "as_evidence", "drop_figure", "quantity", "verdicts"]

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


#: Which way each curve should go for a map of each kind: "lower" or "higher" is better.
BETTER = {"class": {"deletion": "lower", "insertion": "higher"},
          "versus": {"deletion": "lower", "insertion": "higher"},
          "counterfactual": {"deletion": "higher", "insertion": "lower"}}


@dataclass(frozen=True)
class Verdict:
    light: str  # GREEN | YELLOW | RED
    sentence: str


def verdicts(report: TrustReport, class_name: str, versus_name: str | None = None,
             head: str = "") -> dict[str, Verdict]:
    """One verdict per figure: "deletion", "insertion", "average_drop" and (when run) "sanity".

    ``versus_name``: the "rather than" class of a versus map (its sentences name both). ``head``: a
    "value" or "segmentation" head's class map is told in the words of its score, not of a belief.
    """
    if head in SCORE_HEADS and report.kind == "class":
        words = _score_words(f"the {'value' if head == 'value' else 'region score'} of '{class_name}'")
    else:
        words = _words(report.kind, f"'{class_name}'", f"'{versus_name}'" if versus_name else "the other class")
    seen = as_evidence(report)
    result = {
        "deletion": _deletion(seen, words),
        "insertion": _insertion(seen, words),
        "average_drop": _average_drop(report, seen, words),
    }
    if report.sanity:
        result["sanity"] = _sanity(report)
    return result


def quantity(kind: str, class_name: str, versus_name: str | None = None, head: str = "") -> str:
    """What the curves plot, in a few words: "p('star')", or the share of a "rather than" map; for a
    value or segmentation head the explained score relative to the blurred picture's (core/trust.py)."""
    if head in SCORE_HEADS:
        what = "value" if head == "value" else "region score"
        return f"{what} of '{class_name}' (1 = the picture's, 0 = its blur's)"
    if kind == "versus" and versus_name:
        return f"share of '{class_name}' vs '{versus_name}'"
    return f"p('{class_name}')"


def drop_figure(report: TrustReport) -> str:
    """Average Drop's figure in a few words that agree with its sentence ("drops 67 %", "rises 12 %")."""
    original, masked = report.original, report.masked
    if report.kind == "counterfactual":  # in p(c) itself, as its sentence says it
        if masked == original:
            return f"stays at {_pct(original)}"
        return f"{'rises' if masked > original else 'falls'} {_pct(original)} → {_pct(masked)}"
    if report.increase_in_confidence:
        return f"rises {_pct(_rise(original, masked))}"
    return f"drops {report.average_drop:.0f} %"


def _pct(value: float) -> str:
    return f"{100 * value:.0f} %"


def _rise(original: float, masked: float) -> float:
    return (masked - original) / original if original > 0 else 0.0


def as_evidence(report: TrustReport) -> TrustReport:
    """The report in the map's own direction: for an "against" map, the curves of 1 − p (module docstring)."""
    if report.kind != "counterfactual":
        return report

    def flip(curve):
        return None if curve is None else 1.0 - curve

    return dataclasses.replace(report, deletion_curve=1.0 - report.deletion_curve,
                               insertion_curve=1.0 - report.insertion_curve, original=1.0 - report.original,
                               masked=1.0 - report.masked, random_deletion_curve=flip(report.random_deletion_curve),
                               random_insertion_curve=flip(report.random_insertion_curve), sanity=[], kind="class")


def _words(kind: str, name: str, other: str) -> dict[str, str]:
    """The sentences for one kind of map, keyed "<figure>.<light>" ("deletion.none": nothing to measure;
    "drop" and "drop.gain" are templates of {before}, {after}, {drop}, {rise} and {tail})."""
    if kind == "counterfactual":
        return {
            "deletion.none": f"The model is already certain of {name}: there is nothing against it to remove, "
                             "so deletion says nothing here.",
            "deletion.green": f"Removing the map's hottest parts first makes the model turn to {name} quickly: "
                              f"the map points at what speaks against {name}.",
            "deletion.yellow": f"Removing the map's hottest parts first raises the model's belief in {name}, but "
                               f"slowly: the map finds some of what speaks against {name}.",
            "deletion.red": f"Removing the map's hottest parts first hardly raises the model's belief in {name}: "
                            f"the map may not show what speaks against {name}.",
            "insertion.green": f"Showing the map's hottest parts first on a blurred picture keeps {name} down: "
                               "they are what speaks against it.",
            "insertion.yellow": f"Showing the hottest parts first keeps {name} down only a little: "
                                "more than what the map highlights speaks against it.",
            "insertion.red": f"Showing the hottest parts first keeps {name} down no better than random pixels: "
                             "the map does not find what speaks against it.",
            "drop.gain": f"Keeping only what the map highlights makes the model even less sure of {name} "
                         "({before} → {after}): the highlighted parts speak against it.",
            "drop": f"Keeping only what the map highlights, the model's belief in {name} rises from {{before}} to "
                    "{after} (its doubt drops by {drop}): {tail}",
            "drop.green": f"the highlighted parts still hold {name} back.",
            "drop.yellow": f"the highlighted parts hold {name} back only in part.",
            "drop.red": f"the highlighted parts alone do not speak against {name}.",
        }
    if kind == "versus":
        return {
            "deletion.none": f"The model gives {name} no share against {other}: deletion says nothing here.",
            "deletion.green": f"Removing the map's hottest parts first turns the model from {name} to {other} "
                              f"quickly: the map points at what tells {name} from {other}.",
            "deletion.yellow": f"Removing the map's hottest parts first turns the model toward {other}, but slowly: "
                               f"the map finds some of what tells {name} from {other}.",
            "deletion.red": f"Removing the map's hottest parts first hardly turns the model from {name} to {other}: "
                            "the map may not show what tells them apart.",
            "insertion.green": f"Showing the map's hottest parts first on a blurred picture brings {name} back over "
                               f"{other} quickly: they are enough to tell them apart.",
            "insertion.yellow": f"Showing the hottest parts first brings {name} back over {other} only slowly: "
                                "the model needs more than what the map highlights.",
            "insertion.red": f"Showing the hottest parts first brings {name} back over {other} no faster than "
                             "random pixels: the map does not find what tells them apart.",
            "drop.gain": f"Keeping only what the map highlights makes the model prefer {name} to {other} even more "
                         "(its share rises by {rise}, {before} → {after}).",
            "drop": f"Keeping only what the map highlights, the model's preference for {name} over {other} drops "
                    "by {drop} ({before} → {after}): {tail}",
            "drop.green": f"the highlighted parts carry what tells {name} from {other}.",
            "drop.yellow": "the highlighted parts carry part of what tells them apart.",
            "drop.red": "the model needs more than the highlighted parts to tell them apart.",
        }
    return {
        "deletion.none": f"The model gives {name} no probability to lose: deletion says nothing here.",
        "deletion.green": f"Removing the map's hottest parts first makes the model lose {name} quickly: "
                          "the map points at what the model uses.",
        "deletion.yellow": f"Removing the map's hottest parts first lowers the model's belief in {name}, but slowly: "
                           "the map finds some of what the model uses.",
        "deletion.red": f"Removing the map's hottest parts first hardly changes the model's belief in {name}: "
                        "the map may not show what the model uses.",
        "insertion.green": f"Showing the map's hottest parts first on a blurred picture brings {name} back quickly: "
                           "they are enough for the model.",
        "insertion.yellow": f"Showing the hottest parts first brings {name} back only slowly: "
                            "the model needs more than what the map highlights.",
        "insertion.red": f"Showing the hottest parts first brings {name} back no faster than random pixels: "
                         "the map does not find what the model needs.",
        "drop.gain": f"Keeping only what the map highlights makes the model even surer of {name} "
                     "(its confidence rises by {rise}, {before} → {after}).",
        "drop": f"Keeping only what the map highlights, the model's confidence in {name} drops by {{drop}} "
                "({before} → {after}): {tail}",
        "drop.green": "the highlighted parts carry the model's decision.",
        "drop.yellow": "the highlighted parts carry part of the decision.",
        "drop.red": "the model needs more than the highlighted parts.",
    }


def _score_words(name: str) -> dict[str, str]:
    """The sentences of a value's (or region score's) map: its curves run from 1 at the picture to 0 at
    the blurred picture (core/trust.py), so "{before} → {after}" is how much of the way is left."""
    return {
        "deletion.none": f"The blurred picture gives {name} the same as the picture: deletion says nothing here.",
        "deletion.green": f"Removing the map's hottest parts first moves {name} quickly to the blurred picture's: "
                          "the map points at what sets it.",
        "deletion.yellow": f"Removing the map's hottest parts first moves {name} toward the blurred picture's, but "
                           "slowly: the map finds some of what sets it.",
        "deletion.red": f"Removing the map's hottest parts first hardly moves {name}: the map may not show what "
                        "sets it.",
        "insertion.green": f"Showing the map's hottest parts first on a blurred picture brings {name} back quickly: "
                           "they are enough to set it.",
        "insertion.yellow": f"Showing the hottest parts first brings {name} back only slowly: the model needs more "
                            "than what the map highlights.",
        "insertion.red": f"Showing the hottest parts first brings {name} back no faster than random pixels: the map "
                         "does not find what sets it.",
        "drop.gain": f"Keeping only what the map highlights moves {name} even further from the blurred picture's "
                     "({before} → {after} of the way).",
        "drop": f"Keeping only what the map highlights, {name} loses {{drop}} of its way from the blurred "
                "picture's ({before} → {after}): {tail}",
        "drop.green": "the highlighted parts set it.",
        "drop.yellow": "the highlighted parts set part of it.",
        "drop.red": "the model needs more than the highlighted parts.",
    }


def _light(good: bool, weak: bool) -> str:
    return GREEN if good else YELLOW if weak else RED


def _deletion(report: TrustReport, words: dict[str, str]) -> Verdict:
    reference = report.original
    if reference <= 0:
        return Verdict(YELLOW, words["deletion.none"])
    ratio = report.deletion_auc / reference
    light = _light(ratio <= DELETION_GOOD, ratio <= DELETION_WEAK)
    return Verdict(light, words[f"deletion.{light}"])


def _insertion(report: TrustReport, words: dict[str, str]) -> Verdict:
    auc, confidence = report.insertion_auc, report.original
    if report.random_insertion_auc is not None:
        good = auc >= report.random_insertion_auc + INSERTION_MARGIN * confidence
        weak = auc >= report.random_insertion_auc
    else:
        good, weak = auc >= INSERTION_GOOD * confidence, auc >= INSERTION_WEAK * confidence
    light = _light(good, weak)
    return Verdict(light, words[f"insertion.{light}"])


def _average_drop(report: TrustReport, seen: TrustReport, words: dict[str, str]) -> Verdict:
    """Judged on ``seen`` (the map's own direction); the sentence's numbers are ``report``'s p."""
    numbers = {"before": _pct(report.original), "after": _pct(report.masked), "drop": f"{seen.average_drop:.0f} %",
               "rise": _pct(_rise(report.original, report.masked))}
    if seen.increase_in_confidence:
        return Verdict(GREEN, words["drop.gain"].format(**numbers))
    drop = seen.average_drop
    light = _light(drop <= DROP_GOOD, drop <= DROP_WEAK)
    return Verdict(light, words["drop"].format(tail=words[f"drop.{light}"], **numbers))


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
