"""What each ``gradcam`` sub-command does (the CLI's bodies; argument parsing is in cli.py)."""

from __future__ import annotations

import json
import os
import sys
import unicodedata
from pathlib import Path

import numpy as np

from .core import annotate, cams, files, overlay
from .core.batch import OutputStyle, explain_batch, make_out_dir, shown_path, write_csv
from .core.errors import ImageLoadError, MethodError, OutputError
from .core.gradcam import GradCam
from .core.images import LoadedImage, find_images, load_image
from .core.layers import check_eligible, default_layer, iter_layers, layer_tree
from .core.models import LoadedModel, load_model

#: Unicode categories that break a line or drive a terminal: controls (\n, \r, ESC, DEL …), U+2028, U+2029.
_LINE_BREAKING = frozenset(("Cc", "Zl", "Zp"))


def one_line(text: str) -> str:
    """``text`` as one line: line breaks and control characters (from a file name, say) shown as
    escapes (``\\n``, ``\\x1b``), so that no message splits or drives the terminal."""
    if text.isprintable():
        return text
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in _LINE_BREAKING else c for c in text)


def check_output_path(path: str | os.PathLike[str], option: str, *, folder: bool = False) -> None:
    """Refuse, before the model is opened and before anything is created, an output path that is
    surely a mistake: a line break or control character in it (a paste gone wrong), or, for a
    ``folder``, an existing file."""
    text = os.fspath(path)
    if any(unicodedata.category(c) in _LINE_BREAKING for c in str(text)):
        raise OutputError(f"The {option} path {shown_path(path)} holds a line break or another control character: "
                          "give it again without them.")
    if folder:  # the nearest part that exists must be a folder
        target = Path(path)
        existing = next((part for part in (target, *target.parents) if part.exists()), None)
        if existing is not None and not existing.is_dir():
            raise OutputError(f"Cannot create the output folder {shown_path(path)}: {shown_path(existing)} is a file. "
                              "Choose another folder.")


def _note(text: str) -> None:
    print(one_line(f"Note: {text}"), file=sys.stderr)


def _progress_callback():
    """A rich download bar on a terminal, nothing otherwise (scripts get clean output)."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                        console=_stderr_console(), transient=True)
    task = progress.add_task("Downloading weights", total=None)

    def update(done: int, total: int | None) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    return update, progress


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def open_model(args) -> LoadedModel:
    custom = getattr(args, "custom_objects", None)
    if custom:
        from .core.custom_objects import load_for_model

        # --custom-objects is the user's trust in this file; it runs only if the model needs it,
        # after the model passed every check that does not need its classes.
        _note(load_for_model(custom, args.model, trust=args.trust_model).note)
    update, progress = _progress_callback()
    try:
        loaded = load_model(args.model, trust=args.trust_model, preprocess=args.preprocess, progress=update)
    finally:
        if progress is not None:
            progress.stop()
    for notice in loaded.notices:
        _note(notice)
    return loaded


def load_picture(path: str | Path) -> LoadedImage:
    image = load_image(path)
    for notice in image.notices:
        _note(f"{image.name}: {notice}")
    return image


# -- layers ------------------------------------------------------------------------------
def layers(args) -> int:
    loaded = open_model(args)
    nodes = layer_tree(loaded.model)
    default = default_layer(loaded.model)
    rows = [
        {"path": node.path, "type": node.type, "output_shape": list(node.output_shape),
         "eligible": node.eligible, "default": node.path == default}
        for node in iter_layers(nodes)
    ]
    if args.json:
        print(json.dumps({"model": loaded.source, "default_layer": default, "layers": rows}, indent=2))
        return 0
    width = max(len(row["path"]) for row in rows)
    for row in rows:
        mark = "*" if row["default"] else ("+" if row["eligible"] else " ")
        shape = "×".join("?" if side is None else str(side) for side in row["output_shape"][1:])
        print(f"{mark} {row['path']:<{width}}  {row['type']:<24} {shape}")
    print(f"\n+ a map can be taken here   * default layer ({default})")
    return 0


# -- predict -----------------------------------------------------------------------------
def predict(args) -> int:
    loaded = open_model(args)
    engine = GradCam(loaded)
    image = load_picture(args.image)
    prediction = engine.predict(image)
    k = max(1, min(args.top, len(loaded.class_names)))
    order = np.argsort(-prediction.probabilities, kind="stable")[:k]
    rows = [{"class_index": int(i), "class_name": loaded.class_names[i],
             "probability": float(prediction.probabilities[i])} for i in order]
    if args.json:
        print(json.dumps({"image": str(args.image), "model": loaded.source, "head": prediction.head,
                          "predictions": rows}, indent=2))
        return 0
    for row in rows:
        print(f"{row['probability'] * 100:6.2f} %  {row['class_name']} ({row['class_index']})")
    return 0


# -- the map options of explain and batch -------------------------------------------------
def map_options(args) -> dict:
    """The engine's options from the arguments; the checks that need no model (one line each)."""
    chosen = cams.method(args.method)
    if args.versus is not None and args.counterfactual:
        raise MethodError("--versus and --counterfactual cannot be combined: a map explains one score.")
    if args.max_channels is not None and not chosen.forward_passes:
        raise MethodError(f"--max-channels only applies to Score-CAM (--method scorecam), not {chosen.title}.")
    if args.max_channels is not None and args.max_channels < 1:
        raise MethodError(f"--max-channels must be 1 or more, not {args.max_channels}.")
    layers = list(dict.fromkeys(args.layer or []))  # a layer named twice would only weigh double
    return {"layer": None if not layers else layers[0] if len(layers) == 1 else layers, "method": chosen.name,
            "counterfactual": bool(args.counterfactual), "max_channels": args.max_channels}


def target_of(engine: GradCam, args) -> tuple[int | None, int | None]:
    """(class index, versus index) from --class and --versus, checked by the engine (MethodError when
    they name one class)."""
    target = engine.target(args.cls, args.versus, args.counterfactual)
    return target.class_index, target.versus


def _method_notes(args) -> list[str]:
    """Eigen-CAM's map is the same for every class: say so when a class or score was asked for."""
    chosen = cams.method(args.method)
    asked = [flag for flag, given in (("--class", args.cls is not None), ("--versus", args.versus is not None),
                                      ("--counterfactual", args.counterfactual)) if given]
    if chosen.class_specific or not asked:
        return []
    return [f"{chosen.title} is not class-specific: its map is the same for every class, "
            f"so {' and '.join(asked)} {'does' if len(asked) == 1 else 'do'} not change it."]


def describe(result) -> str:
    """"Grad-CAM++ · 'cat' rather than 'dog'": the method and the score a map explains."""
    chosen = cams.METHODS.get(result.method)
    title = chosen.title if chosen else result.method
    if chosen is not None and not chosen.class_specific:
        title += " (not class-specific)"
    if result.score_kind == "versus":
        return f"{title} · '{result.class_name}' rather than '{result.versus_name}'"
    if result.score_kind == "counterfactual":
        return f"{title} · against '{result.class_name}'"
    return f"{title} · '{result.class_name}'"


def _flat_note(result) -> str | None:
    if not result.flat:
        return None
    if float(result.raw.max()) > 0:
        return ("the map is uniform: this layer's grid is too coarse or too even to show where. "
                "Try an earlier layer.")
    what = {"versus": f"favours '{result.class_name}' over '{result.versus_name}'",
            "counterfactual": f"speaks against '{result.class_name}'"}.get(result.score_kind, "speaks for this class")
    return f"the map is all zero: nothing at this layer {what}. Try another layer, class or method."


def patch_note(engine: GradCam, result) -> str | None:
    """A Vision Transformer's token layer gives one value per patch: say so (issue 11)."""
    grids = [engine.capture(layer).grid for layer in (result.layers or (result.layer,))]
    grid = next((grid for grid in grids if grid is not None), None)
    if grid is None:
        return None
    dropped = f", {grid.prefix} class token(s) left out" if grid.prefix else ""
    return (f"this is a transformer's token layer: the map is at patch resolution "
            f"({grid.height}×{grid.width} patches{dropped}).")


def step_progress(label: str):
    """A rich bar for Score-CAM's mask batches on a terminal (update, bar); (None, None) otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import MofNCompleteColumn, Progress

    progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=_stderr_console(),
                        transient=True)
    task = progress.add_task(label, total=None)

    def update(done: int, total: int) -> None:
        if not progress.live.is_started:
            progress.start()
        progress.update(task, completed=done, total=total)

    return update, progress


# -- explain -----------------------------------------------------------------------------
def explain(args) -> int:
    options = map_options(args)
    for option, target in (("--out", args.out), ("--heatmap", args.heatmap)):
        if target:
            check_output_path(target, option)
            if not Path(target).parent.exists():
                raise OutputError(f"Cannot write {shown_path(target)}: the folder {shown_path(Path(target).parent)} "
                                  "does not exist. Create it first, or choose another path.")
    loaded = open_model(args)
    engine = GradCam(loaded)
    class_index, versus = target_of(engine, args)
    notes = _method_notes(args)
    image = load_picture(args.image)
    update, bar = step_progress("Score-CAM masks") if cams.method(args.method).forward_passes else (None, None)
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
        contents.append((args.heatmap, files.npy_bytes(result.raw)))
    files.atomic_write_all(contents)
    notes += [note for note in (_flat_note(result), patch_note(engine, result)) if note]
    if args.json:
        print(json.dumps({**result.record(), "image": str(args.image), "overlay": args.out,
                          "heatmap": args.heatmap, "notes": notes}, indent=2))
    else:
        h, w = result.raw.shape
        y = f", score y = {result.target_score:.4g}" if np.isfinite(result.target_score) else ""
        print(f"{describe(result)} (class {result.class_index}, p = {result.score:.3f}{y}) "
              f"at layer {result.layer}: {h}×{w} map in {result.seconds:.2f} s")
        for label, path in (("overlay", args.out), ("raw map", args.heatmap)):
            if path:
                print(f"  {label} → {path}")
        if not (args.out or args.heatmap):
            print("  nothing written: add --out overlay.png to save the picture, --heatmap map.npy "
                  "for the raw map, or --json for the numbers")
    for note in notes:
        _note(note)
    return 0


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
    options = map_options(args)
    check_output_path(args.out_dir, "--out-dir", folder=True)
    paths, bad = _expand_inputs(args.inputs)
    for row in bad:
        print(one_line(f"Skipped {row['image']}: {row['error']}"), file=sys.stderr)
    loaded = open_model(args)
    engine = GradCam(loaded)
    layers = options["layer"]
    for layer in [layers] if isinstance(layers, str) else layers or []:
        check_eligible(loaded.model, layer)  # fail before any image, not once per image
    class_index, versus = target_of(engine, args)
    out_dir = make_out_dir(args.out_dir)  # only now: a refused model or option leaves no empty folder behind
    for note in _method_notes(args):
        _note(note)
    style = OutputStyle(alpha=args.alpha, colormap=args.colormap, heatmaps=args.heatmaps,
                        decorate=annotate.decorator(args.colormap) if args.caption else None,
                        sidecar_extra={"model_name": loaded.display_name, "model_sha256": loaded.sha256})
    measure = None
    if args.trust:
        from .trust_command import figures

        measure = figures(engine)
    progress, masks = _batch_progress(len(paths), cams.method(args.method).forward_passes)
    rows: list = []
    interrupted = False
    try:
        for row in explain_batch(engine, paths, out_dir, class_index=class_index, versus=versus, style=style,
                                 progress=masks, measure=measure, **options):
            rows.append(row)
            for notice in row.notices:
                _note(f"{Path(row.source).name}: {notice}")
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
        from .trust_command import TRUST_FIELDS, summary

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
    print(f"{len(rows) - failed} of {len(rows)} images explained with {cams.method(args.method).title} → {out_dir}",
          file=sys.stderr)
    return 1 if failed else 0


def _batch_progress(total: int, masks: bool):
    """(bar, Score-CAM mask callback) on a terminal, (None, None) otherwise."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import MofNCompleteColumn, Progress

    progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=_stderr_console())
    progress.add_task("Explaining", total=total)
    update = None
    if masks:
        task = progress.add_task("Score-CAM masks", total=None)

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


# -- trust -----------------------------------------------------------------------------
def trust(args) -> int:
    """``gradcam trust``: see trust_command.py."""
    from .trust_command import run

    return run(args)


# -- triage ----------------------------------------------------------------------------
def triage(args) -> int:
    """``gradcam triage``: see triage_command.py (which creates --out-dir once the model has opened)."""
    from .triage_command import run

    check_output_path(args.out_dir, "--out-dir", folder=True)
    return run(args)


# -- methods ---------------------------------------------------------------------------
def methods(args) -> int:
    rows = [{"name": m.name, "title": m.title, "summary": m.summary, "class_specific": m.class_specific,
             "uses_gradients": m.uses_gradients, "forward_passes": m.forward_passes} for m in cams.METHODS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows) + 2
    for row in rows:
        marks = ["class-specific" if row["class_specific"] else "not class-specific (the same map for every class)",
                 "a forward pass per feature map (slow; --max-channels N)" if row["forward_passes"]
                 else "one forward + backward pass" if row["uses_gradients"] else "one forward pass, no gradients"]
        print(f"{row['name']:<{width}}{row['title']} · {' · '.join(marks)}")
        print(f"{'':<{width}}{row['summary']}")
    print("\nUse one with --method NAME; explain another score with --versus CLASS or --counterfactual.")
    return 0


# -- zoo ---------------------------------------------------------------------------------
def zoo(args) -> int:
    from .core import zoo as registry

    rows = [{"name": name, "input_size": list(registry.entry(name).input_size),
             "cached": registry.weights_path(name).is_file(), "weights": str(registry.weights_path(name))}
            for name in registry.zoo_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        size = "×".join(map(str, row["input_size"]))
        state = "cached" if row["cached"] else "downloads on first use"
        print(f"zoo:{row['name']:<18} {size:<9} {state}")
    return 0


__all__ = ["layers", "predict", "explain", "batch", "trust", "triage", "methods", "zoo", "describe"]
