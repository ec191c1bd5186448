"""``gradcam triage``: where is the model wrong on a labelled folder, and where does it look when it is?

The rows and tables are core/triage.py's; this module reads the arguments, draws the progress bar,
writes each mistake's picture (the map of the predicted class beside the map of the true class)
and prints the accuracy and the most confused pairs. With ``--ray [ADDRESS]`` the rows come from a Ray
actor pool (core/ray_folder.py, docs/SCALING.md): the same rows, tables and maps.
"""

from __future__ import annotations

import json
import math
import sys
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..core import cams, files, ray_folder
from ..core.batch import make_out_dir
from ..core.errors import GradCamError
from ..core.gradcam import GradCam
from ..core.images import load_image
from ..core.mistake_picture import explained_picture
from ..core.triage import (
    TriageRow,
    accuracy,
    confusion_matrix,
    most_confused,
    triage,
    write_confusion_csv,
    write_triage_csv,
)
from . import shared

__all__ = ["EXPLAIN_CHOICES", "run"]

EXPLAIN_CHOICES = ("wrong", "all", "none")
MAPS_FOLDER = "maps"


def run(args) -> int:
    """Predict every labelled picture, write triage.csv, confusion.csv and the maps asked for; print the summary.
    --out-dir is checked first and created once the model has opened. With --ray the rows are
    computed by a Ray actor pool (core/ray_folder.py) and everything else is the same."""
    shared.check_output_path(args.out_dir, "--out-dir", folder=True)
    chosen = cams.method(args.method or shared.DEFAULT_METHOD)  # an unknown method fails before the model loads
    address = getattr(args, "ray", None)
    if address:
        ray_folder.check(address)  # Ray installed, the address answers: before the model opens
    loaded, engine, labels = shared.open_labelled(args)
    method = shared.settle_method(engine, args, {"method": chosen}).name if args.explain != "none" else chosen.name
    out_dir = make_out_dir(args.out_dir)
    pictures = labels.pictures
    # "square-img001": a class folder's name keeps apart the many img001.jpg of a labelled folder.
    stems = files.unique_stems([f"{Path(p.path).parent.name}-{Path(p.path).name}" for p in pictures])
    indexed: list[tuple[int, TriageRow]] = []  # with --ray in the order the workers finish
    maps = 0
    interrupted = False
    with ray_folder.connected(address, quiet=not args.debug) if address else nullcontext():
        bar = shared.count_bar("Triage", len(pictures))
        found = (ray_folder.triage_rows(pictures, ray_folder.WorkerModel(
            args.model, trust=args.trust_model, preprocess=args.preprocess, custom_objects=args.custom_objects,
            output=getattr(args, "output", None)))
            if address else enumerate(triage(engine, pictures)))
        try:
            for index, row in found:
                indexed.append((index, row))
                if row.error:
                    shared.say(bar, f"Skipped: {row.error}")
                elif args.explain == "all" or (args.explain == "wrong" and not row.correct):
                    try:
                        _write_explained(engine, row, out_dir / MAPS_FOLDER / f"{stems[index]}.png", args.layer,
                                         method)
                        maps += 1
                    except GradCamError as error:
                        shared.say(bar, f"No map for {Path(row.image).name}: {error}")
                if bar is not None:
                    bar.advance(bar.task_ids[0])
        except KeyboardInterrupt:
            interrupted = True  # the rows so far still get their tables
        finally:
            if bar is not None:
                bar.stop()
    rows = [row for _index, row in sorted(indexed, key=lambda item: item[0])]
    matrix = confusion_matrix(rows, len(loaded.class_names))
    write_triage_csv(out_dir / "triage.csv", rows)
    write_confusion_csv(out_dir / "confusion.csv", matrix, loaded.class_names)
    errors = sum(1 for row in rows if row.error)
    folders = {p.path for p in labels.unreadable}
    unread_folders = sum(1 for row in rows if row.error and row.image in folders)
    share, share_read = accuracy(rows), accuracy(rows, read_only=True)
    if args.json:
        # One line: indented, a 1000-class matrix would be a million lines.
        print(json.dumps({"count": len(rows), "accuracy": None if math.isnan(share) else share,
                          "accuracy_read": None if math.isnan(share_read) else share_read, "errors": errors,
                          "unreadable_folders": unread_folders, "skipped": labels.skipped_count,
                          "confusion": matrix.tolist(), "classes": list(loaded.class_names)}))
    else:
        _print_summary(rows, matrix, loaded.class_names, errors, unread_folders, labels.skipped_count)
        written = f" and {maps} map{'s' if maps != 1 else ''} in {MAPS_FOLDER}/" if maps else ""
        print(f"triage.csv, confusion.csv{written} → {out_dir}")
    if interrupted:
        print(f"Interrupted after {len(rows)} of {len(pictures)} pictures; triage.csv lists them.", file=sys.stderr)
        return 130
    return 1 if errors else 0


def _print_summary(rows: list[TriageRow], matrix: np.ndarray, class_names: list[str], errors: int,
                   folders: int, skipped: int) -> None:
    """Accuracy over every row: what could not be read counts as wrong (and the share of what was read)."""
    judged = len(rows) - errors
    right = sum(row.correct for row in rows if not row.error)
    if judged and errors:
        which = f" ({folders} of them class folder{'s' if folders != 1 else ''})" if folders else ""
        print(f"Accuracy {right / len(rows) * 100:.1f} % ({right} of {len(rows)} right; {errors} could not be read"
              f"{which}, counted as wrong; {right / judged * 100:.1f} % of the {judged} read)")
    elif judged:
        print(f"Accuracy {right / judged * 100:.1f} % ({right} of {judged} pictures right)")
    else:
        print(f"No picture could be read ({errors} tried).")
    if skipped:
        print(f"Skipped {skipped} picture{'s' if skipped != 1 else ''} whose label names no class of this model "
              "(listed in the warning above): rename the label to one of the classes to check them.")
    pairs = most_confused(matrix, class_names)
    if pairs:
        print("Most confused (true → predicted):")
        width = max(len(true) for true, _, _ in pairs)
        for true, predicted, count in pairs:
            print(f"  {true:<{width}} → {predicted}: {count}")
    elif judged:
        print("No class was mistaken for another.")


def _write_explained(engine: GradCam, row: TriageRow, path: Path, layer: str | None, method: str) -> None:
    image = load_image(row.image)  # decoded again: rows never hold pixels, and mistakes are few
    if not path.parent.exists():
        make_out_dir(path.parent)
    files.atomic_write_png(path, explained_picture(engine, image, row, layer, method))
