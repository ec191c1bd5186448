"""``gradcam explain`` (one picture's map) and ``gradcam batch`` (a folder's maps, one row each in results.csv)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..core import annotate, files, overlay
from ..core.batch import OutputStyle, explain_batch, make_out_dir, shown_path, write_csv
from ..core.errors import ImageLoadError, OutputError
from ..core.gradcam import GradCam
from ..core.images import find_images
from ..core.layers import check_eligible
from . import shared
from .shared import check_output_path, describe, one_line

# -- explain -----------------------------------------------------------------------------
def explain(args) -> int:
    options = shared.map_options(args)
    for option, target in (("--out", args.out), ("--heatmap", args.heatmap)):
        if target:
            check_output_path(target, option)
            if not Path(target).parent.exists():
                raise OutputError(f"Cannot write {shown_path(target)}: the folder {shown_path(Path(target).parent)} "
                                  "does not exist. Create it first, or choose another path.")
    loaded = shared.open_model(args)
    engine = GradCam(loaded)
    shared.settle_method(engine, args, options)
    class_index, versus = shared.target_of(engine, args)
    notes = shared.method_notes(args)
    image = shared.load_picture(args.image)
    chosen = options["method"]
    update, bar = shared.step_progress(f"{chosen.title} passes") if chosen.stepwise else (None, None)
    try:
        result = engine.explain(image, class_index=class_index, versus=versus, progress=update, **options)
    finally:
        if bar is not None:
            bar.stop()
    display, result.flat = overlay.display_map(result.raw, image.rgb.shape[:2])
    contents: list[tuple[str, bytes]] = []  # the overlay and the raw map: both or neither
    if args.out:
        picture = overlay.blend(image.rgb, display, args.alpha, args.colormap)
        if args.caption:
            picture = annotate.burn(picture, result, args.colormap)
        contents.append((args.out, files.png_bytes(args.out, picture)))
    if args.heatmap:
        contents.append((args.heatmap, files.npy_bytes(result.raw if result.attribution is None else result.attribution)))
    files.atomic_write_all(contents)
    notes += [note for note in (shared.flat_note(result), shared.patch_note(engine, result)) if note]
    if args.json:
        output = {"output": loaded.output} if getattr(loaded, "output", None) else {}
        print(json.dumps({**result.record(), **output, "image": str(args.image), "overlay": args.out,
                          "heatmap": args.heatmap, "notes": notes}, indent=2))
    else:
        h, w = result.raw.shape
        y = f", score y = {result.target_score:.4g}" if np.isfinite(result.target_score) else ""
        print(f"{describe(result)} (class {result.class_index}, {_score_words(result)}{y}) "
              f"{annotate.where(result)}: {h}×{w} map in {result.seconds:.2f} s")
        for label, path in (("overlay", args.out), ("raw map", args.heatmap)):
            if path:
                print(f"  {label} → {path}")
        if not (args.out or args.heatmap):
            print("  nothing written: add --out overlay.png to save the picture, --heatmap map.npy "
                  "for the raw map, or --json for the numbers")
    for note in notes:
        shared.note(note)
    return 0


def _score_words(result) -> str:
    """"p = 0.953", "value = 31.2" (a value head) or "41.0 % of the pixels" (a segmentation head)."""
    head = result.prediction.head
    if head == "value":
        return f"value = {result.score:.4g}"
    if head == "segmentation":
        return annotate.format_score(result.score, head)
    return f"p = {result.score:.3f}"


# -- batch -------------------------------------------------------------------------------
def _expand_inputs(inputs: list[str]) -> tuple[list[Path], list[dict]]:
    """Images from files and folders; an input that yields none becomes a failed row, not a stop."""
    paths: list[Path] = []
    seen: set[Path] = set()  # not `p not in paths`: a list made a folder of 100,000 pictures quadratic
    bad: list[dict] = []
    for item in inputs:
        try:
            found = find_images([item])
        except ImageLoadError as error:
            bad.append({"image": str(item), "error": str(error)})
            continue
        fresh = [p for p in found if p not in seen]
        seen.update(fresh)
        paths += fresh
    if not paths:
        raise ImageLoadError(bad[0]["error"] if len(bad) == 1 else "None of the inputs holds an image.")
    return paths, bad


def batch(args) -> int:
    options = shared.map_options(args)
    check_output_path(args.out_dir, "--out-dir", folder=True)
    paths, bad = _expand_inputs(args.inputs)
    for row in bad:
        print(one_line(f"Skipped {row['image']}: {row['error']}"), file=sys.stderr)
    loaded = shared.open_model(args)
    engine = GradCam(loaded)
    layers = options["layer"]
    shared.settle_method(engine, args, options)  # before any image
    for layer in [layers] if isinstance(layers, str) else layers or []:
        check_eligible(loaded.model, layer)  # fail before any image, not once per image
    class_index, versus = shared.target_of(engine, args)
    out_dir = make_out_dir(args.out_dir)  # only now: a refused model or option leaves no empty folder behind
    for note in shared.method_notes(args):
        shared.note(note)
    style = OutputStyle(alpha=args.alpha, colormap=args.colormap, heatmaps=args.heatmaps,
                        decorate=annotate.decorator(args.colormap) if args.caption else None,
                        sidecar_extra={"model_name": loaded.display_name, "model_sha256": loaded.sha256})
    measure = None
    if args.trust:
        from .trust import figures

        measure = figures(engine)
    progress, masks = batch_progress(len(paths), options["method"].stepwise)
    rows: list = []
    interrupted = False
    try:
        for row in explain_batch(engine, paths, out_dir, class_index=class_index, versus=versus, style=style,
                                 progress=masks, measure=measure, **options):
            rows.append(row)
            for notice in row.notices:
                shared.note(f"{Path(row.source).name}: {notice}")
            if row.error:
                _report_failure(progress, Path(row.source), row.error)
            if progress:
                progress.advance(progress.task_ids[0])
    except KeyboardInterrupt:
        interrupted = True  # the rows done so far still get their table
    finally:
        if progress:
            progress.stop()
    done = len(rows)
    rows += bad
    if args.trust:
        from .trust import TRUST_FIELDS, summary

        write_csv(out_dir / "results.csv", rows, TRUST_FIELDS)
        line = summary(rows)
        if line:
            print(line, file=sys.stderr)
    else:
        write_csv(out_dir / "results.csv", rows)
    if interrupted:
        print(f"Interrupted after {done} of {len(paths)} images; results.csv lists them.", file=sys.stderr)
        return 130
    failed = sum(1 for row in rows if (row.error if hasattr(row, "error") else row.get("error")))
    print(f"{len(rows) - failed} of {len(rows)} images explained with {options['method'].title} → {out_dir}",
          file=sys.stderr)
    return 1 if failed else 0


def batch_progress(total: int, masks: bool):
    """(bar, Score-CAM mask callback) on a terminal, (None, None) otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import MofNCompleteColumn, Progress

    progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=shared.stderr_console())
    progress.add_task("Explaining", total=total)
    update = None
    if masks:
        task = progress.add_task("Model passes", total=None)

        def update(done: int, total_masks: int) -> None:
            progress.update(task, completed=done, total=total_masks)

    progress.start()
    return progress, update


def _report_failure(progress, path: Path, error: str) -> None:
    line = one_line(f"Skipped {path.name}: {error}")
    if progress:
        progress.console.print(line, markup=False, highlight=False)
    else:
        print(line, file=sys.stderr)
