"""What each ``gradcam`` sub-command does (the CLI's bodies; argument parsing is in cli.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .core import annotate, files, overlay
from .core.batch import OutputStyle, explain_batch, make_out_dir, write_csv
from .core.errors import ImageLoadError, OutputError
from .core.gradcam import GradCam
from .core.images import LoadedImage, find_images, load_image
from .core.layers import check_eligible, default_layer, iter_layers, layer_tree
from .core.models import LoadedModel, load_model

def _note(text: str) -> None:
    print(f"Note: {text}", file=sys.stderr)


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


def _open_model(args) -> LoadedModel:
    update, progress = _progress_callback()
    try:
        loaded = load_model(args.model, trust=args.trust_model, preprocess=args.preprocess, progress=update)
    finally:
        if progress is not None:
            progress.stop()
    for notice in loaded.notices:
        _note(notice)
    return loaded


def _load(path: str | Path) -> LoadedImage:
    image = load_image(path)
    for notice in image.notices:
        _note(f"{image.name}: {notice}")
    return image


# -- layers ------------------------------------------------------------------------------
def layers(args) -> int:
    loaded = _open_model(args)
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
    loaded = _open_model(args)
    engine = GradCam(loaded)
    image = _load(args.image)
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


# -- explain -----------------------------------------------------------------------------
def explain(args) -> int:
    for target in (args.out, args.heatmap):
        if target and not Path(target).parent.exists():
            raise OutputError(f"Cannot write {target}: the folder {Path(target).parent} does not exist.")
    loaded = _open_model(args)
    engine = GradCam(loaded)
    image = _load(args.image)
    result = engine.explain(image, args.layer, args.cls)
    display, result.flat = overlay.display_map(result.raw, image.rgb.shape[:2])
    if args.out:
        picture = overlay.blend(image.rgb, display, args.alpha, args.colormap)
        if args.caption:
            picture = annotate.burn(picture, result, args.colormap)
        files.atomic_write_png(args.out, picture)
    if args.heatmap:
        files.atomic_write_npy(args.heatmap, result.raw)
    if args.json:
        print(json.dumps({**result.record(), "image": str(args.image), "overlay": args.out,
                          "heatmap": args.heatmap}, indent=2))
    else:
        h, w = result.raw.shape
        print(f"{result.class_name} (class {result.class_index}, p = {result.score:.3f}) "
              f"at layer {result.layer}: {h}×{w} map in {result.seconds:.2f} s")
        for label, path in (("overlay", args.out), ("raw map", args.heatmap)):
            if path:
                print(f"  {label} → {path}")
        if not (args.out or args.heatmap):
            print("  nothing written: add --out overlay.png to save the picture, --heatmap map.npy "
                  "for the raw map, or --json for the numbers")
    if result.flat and float(result.raw.max()) > 0:
        _note("the map is uniform: this layer's grid is too coarse or too even to show where. "
              "Try an earlier layer.")
    elif result.flat:
        _note("the map is all zero: nothing at this layer speaks for this class. Try another layer or class.")
    return 0


# -- batch -------------------------------------------------------------------------------
def _expand_inputs(inputs: list[str]) -> tuple[list[Path], list[dict]]:
    """Images from files and folders; an input that yields none becomes a failed row, not a stop."""
    paths: list[Path] = []
    bad: list[dict] = []
    for item in inputs:
        try:
            paths.extend(p for p in find_images([item]) if p not in paths)
        except ImageLoadError as error:
            bad.append({"image": str(item), "error": str(error)})
    if not paths:
        raise ImageLoadError(bad[0]["error"] if len(bad) == 1 else "None of the inputs holds an image.")
    return paths, bad


def batch(args) -> int:
    paths, bad = _expand_inputs(args.inputs)
    for row in bad:
        print(f"Skipped {row['image']}: {row['error']}", file=sys.stderr)
    out_dir = make_out_dir(args.out_dir)
    loaded = _open_model(args)
    engine = GradCam(loaded)
    if args.layer:
        check_eligible(loaded.model, args.layer)  # fail before any image, not once per image
    class_index = engine.resolve_class(args.cls) if args.cls is not None else None
    style = OutputStyle(alpha=args.alpha, colormap=args.colormap, heatmaps=args.heatmaps,
                        decorate=annotate.decorator(args.colormap) if args.caption else None,
                        sidecar_extra={"model_name": loaded.display_name, "model_sha256": loaded.sha256})
    progress = _batch_progress(len(paths))
    rows: list = []
    try:
        for row in explain_batch(engine, paths, out_dir, layer=args.layer, class_index=class_index, style=style):
            rows.append(row)
            for notice in row.notices:
                _note(f"{Path(row.source).name}: {notice}")
            if row.error:
                _report_failure(progress, Path(row.source), row.error)
            if progress:
                progress.advance(progress.task_ids[0])
    finally:
        if progress:
            progress.stop()
    rows += bad
    write_csv(out_dir / "results.csv", rows)
    failed = sum(1 for row in rows if (row.error if hasattr(row, "error") else row.get("error")))
    print(f"{len(rows) - failed} of {len(rows)} images explained → {out_dir}", file=sys.stderr)
    return 1 if failed else 0


def _batch_progress(total: int):
    if not sys.stderr.isatty():
        return None
    from rich.progress import MofNCompleteColumn, Progress

    progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=_stderr_console())
    progress.add_task("Explaining", total=total)
    progress.start()
    return progress


def _report_failure(progress, path: Path, error: str) -> None:
    line = f"Skipped {path.name}: {error}"
    if progress:
        progress.console.print(line, markup=False, highlight=False)
    else:
        print(line, file=sys.stderr)


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


__all__ = ["layers", "predict", "explain", "batch", "zoo"]
