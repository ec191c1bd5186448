"""``gradcam trust`` and ``gradcam batch --trust``: the faithfulness figures of a map, in numbers and words.

The figures are core/trust.py's (deletion/insertion curves and their AUCs, Average Drop, the
cascading randomisation sanity check); the words and traffic lights are core/verdicts.py's, the
same as the window's Trust panel.
"""

from __future__ import annotations

import json
import math

from ..core import annotate, trust
from ..core.gradcam import GradCam
from ..core.verdicts import BETTER, GREEN, RED, YELLOW, drop_figure, quantity, verdicts
from . import shared

__all__ = ["TRUST_FIELDS", "figures", "run", "summary"]

#: The columns ``gradcam batch --trust`` adds to results.csv.
TRUST_FIELDS = ["deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence", "sanity_spearman"]
WORDS = {GREEN: "good", YELLOW: "weak", RED: "poor"}
#: Why a black box's report has no sanity check.
SANITY_BLACK_BOX = ("no sanity check: it re-draws the model's weights layer by layer, and this file shows "
                    "neither layers nor weights.")
MARKS = {GREEN: "✔", YELLOW: "•", RED: "✘"}


def run(args) -> int:
    """``gradcam trust``: one picture's map, then its figures with one verdict each."""
    options = shared.map_options(args)
    loaded = shared.open_model(args)
    engine = GradCam(loaded)
    shared.settle_method(engine, args, options)
    class_index, versus = shared.target_of(engine, args)
    image = shared.load_picture(args.image)
    result = engine.explain(image, class_index=class_index, versus=versus, **options)
    task = trust.trust_task(engine, image, result, baseline=args.baseline, sanity=not args.no_sanity)
    update, bar = shared.step_progress("Trust figures")
    try:
        while not task.step():
            if update is not None:
                update(*task.progress)
    finally:
        if bar is not None:
            bar.stop()
    report = task.finish()
    found = verdicts(report, result.class_name, result.versus_name, result.prediction.head)
    if args.json:
        record = {key: result.record()[key] for key in ("image", "model", "method", "score_kind", "versus_name",
                                                         "layer", "class_index", "class_name", "score")}
        record.update(report.record())
        record["verdicts"] = {name: {"light": v.light, "sentence": v.sentence} for name, v in found.items()}
        print(json.dumps(record, indent=2))
        return 0
    print(f"Trust figures for {shared.describe(result)} ({annotate.format_score(result.score, result.prediction.head)}) "
          f"{annotate.where(result)}, "
          f"{report.steps} steps:")
    # The curves are of ``quantity`` (p of the class, or its share against the "rather than" one); an
    # "against" map wants them the other way round (core/verdicts.py).
    better = BETTER.get(report.kind, BETTER["class"])
    of = quantity(report.kind, result.class_name, result.versus_name, result.prediction.head)
    lines = {
        "deletion": f"Deletion AUC {report.deletion_auc:.3f}{_versus(report.random_deletion_auc)} of {of} "
                    f"({better['deletion']} is better)",
        "insertion": f"Insertion AUC {report.insertion_auc:.3f}{_versus(report.random_insertion_auc)} of {of} "
                     f"({better['insertion']} is better)",
        "average_drop": f"Average Drop: {of} {drop_figure(report)} on the picture × map",
    }
    if report.sanity:
        last = report.sanity[-1]
        lines["sanity"] = (f"Sanity check: Spearman {_rho(last.spearman)} after re-drawing "
                           f"{len(last.randomized)} weighted layers")
    for name, verdict in found.items():
        print(f"  {MARKS[verdict.light]} {WORDS[verdict.light]:<5} {lines[name]}")
        print(f"          {verdict.sentence}")
    if report.sanity:
        steps = " · ".join(f"{s.randomized[-1]} {_rho(s.spearman)}" for s in report.sanity)
        print(f"  sanity steps (down to the layer last re-drawn): {steps}")
    elif not args.no_sanity and engine.model is None:
        shared.note(SANITY_BLACK_BOX)
    return 0


def _versus(random_auc: float | None) -> str:
    return "" if random_auc is None else f" vs {random_auc:.3f} in random order"


def _rho(value: float) -> str:
    return "n/a (flat map)" if not math.isfinite(value) else f"ρ = {value:+.2f}"


def figures(engine: GradCam, sanity: bool = True):
    """``explain_batch``'s ``measure``: the trust columns of one picture's map."""
    def measure(image, result) -> dict:
        report = trust.trust_report(engine, image, result, sanity=sanity)
        last = report.sanity[-1].spearman if report.sanity else float("nan")
        return {"deletion_auc": f"{report.deletion_auc:.6f}", "insertion_auc": f"{report.insertion_auc:.6f}",
                "average_drop": f"{report.average_drop:.4f}",
                "increase_in_confidence": str(bool(report.increase_in_confidence)).lower(),
                "sanity_spearman": "" if not math.isfinite(last) else f"{last:.6f}"}
    return measure


def summary(rows) -> str | None:
    """The batch's summary line: the mean of each trust figure over the pictures that have it."""
    means = []
    for field, label, unit in (("deletion_auc", "deletion AUC", ""), ("insertion_auc", "insertion AUC", ""),
                               ("average_drop", "Average Drop", " %"), ("sanity_spearman", "sanity ρ", "")):
        values = [float(row.extra[field]) for row in rows if getattr(row, "extra", None) and row.extra.get(field)]
        if values:
            means.append(f"{label} {sum(values) / len(values):.3f}{unit}")
    return f"Trust (mean over the pictures): {', '.join(means)}" if means else None
