"""What each ``gradcam`` sub-command does (the CLI's bodies; argument parsing is in cli.py)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .core import files, overlay
from .core.errors import GradCamError, ImageLoadError, OutputError
from .core.gradcam import Explanation, GradCam
from .core.images import LoadedImage, find_images, load_image
from .core.layers import check_eligible, default_layer, iter_layers, layer_tree
from .core.models import LoadedModel, load_model

#: Images decoded ahead of the model in `batch`, so decoding overlaps the compute.
PREFETCH = 2


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
def _write_outputs(image: LoadedImage, explanation: Explanation, out, heatmap, alpha, colormap) -> bool:
    """Write overlay/raw map as asked; return whether the map was flat (all zero)."""
    display, flat = overlay.display_map(explanation.raw, image.rgb.shape[:2])
    if out:
        files.atomic_write_png(out, overlay.blend(image.rgb, display, alpha, colormap))
    if heatmap:
        files.atomic_write_npy(heatmap, explanation.raw)
    return flat


def explain(args) -> int:
    for target in (args.out, args.heatmap):
        if target and not Path(target).parent.exists():
            raise OutputError(f"Cannot write {target}: the folder {Path(target).parent} does not exist.")
    loaded = _open_model(args)
    engine = GradCam(loaded)
    image = _load(args.image)
    explanation = engine.explain(image, args.layer, args.cls)
    flat = _write_outputs(image, explanation, args.out, args.heatmap, args.alpha, args.colormap)
    result = {
        "image": str(args.image),
        "model": loaded.source,
        "layer": explanation.layer,
        "class_index": explanation.class_index,
        "class_name": explanation.class_name,
        "score": explanation.score,
        "predicted_index": explanation.prediction.top[0][0],
        "predicted_name": explanation.prediction.top[0][1],
        "heatmap_shape": list(explanation.raw.shape),
        "flat": flat,
        "preprocess": loaded.preprocess,
        "seconds": round(explanation.seconds, 4),
        "overlay": args.out,
        "heatmap": args.heatmap,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        h, w = explanation.raw.shape
        print(f"{explanation.class_name} (class {explanation.class_index}, p = {explanation.score:.3f}) "
              f"at layer {explanation.layer}: {h}×{w} map in {explanation.seconds:.2f} s")
        for label, path in (("overlay", args.out), ("raw map", args.heatmap)):
            if path:
                print(f"  {label} → {path}")
    if flat and float(explanation.raw.max()) > 0:
        _note("the map is uniform: this layer's grid is too coarse or too even to show where. "
              "Try an earlier layer.")
    elif flat:
        _note("the map is all zero: nothing at this layer speaks for this class. Try another layer or class.")
    return 0


# -- batch -------------------------------------------------------------------------------
CSV_FIELDS = ["image", "predicted_index", "predicted_name", "probability", "explained_index",
              "explained_name", "explained_probability", "layer", "seconds", "error"]


def _make_out_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"Cannot create the output folder {folder}: {error.strerror or error}.") from error


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
    out_dir = Path(args.out_dir)
    paths, bad = _expand_inputs(args.inputs)
    for row in bad:
        print(f"Skipped {row['image']}: {row['error']}", file=sys.stderr)
    _make_out_dir(out_dir)
    loaded = _open_model(args)
    engine = GradCam(loaded)
    if args.layer:
        check_eligible(loaded.model, args.layer)  # fail before any image, not once per image
    class_index = engine.resolve_class(args.cls) if args.cls is not None else None
    progress = _batch_progress(len(paths))
    try:
        rows = explain_batch(
            engine, paths, out_dir, layer=args.layer, class_index=class_index, heatmaps=args.heatmaps,
            alpha=args.alpha, colormap=args.colormap,
            on_failure=lambda path, error: _report_failure(progress, path, error),
            on_done=(lambda: progress.advance(progress.task_ids[0])) if progress else None,
        )
    finally:
        if progress:
            progress.stop()
    rows += bad
    _write_csv(out_dir / "results.csv", rows)
    failed = sum(1 for row in rows if row.get("error"))
    print(f"{len(rows) - failed} of {len(rows)} images explained → {out_dir}", file=sys.stderr)
    return 1 if failed else 0


def explain_batch(engine: GradCam, paths: list[Path], out_dir: Path, *, layer=None, class_index=None,
                  heatmaps=False, alpha=0.5, colormap="jet", on_failure=None, on_done=None) -> list[dict]:
    """Explain and write every image; one row per image (``error`` set when it failed).

    Decoding the next images and writing the previous results (Pillow and OpenCV release the
    GIL) run in two threads beside TensorFlow; at most ``PREFETCH`` images wait on either side,
    so memory stays flat however many images there are.
    """
    rows: list[dict] = []

    def fail(row: dict, path: Path, error: GradCamError) -> None:
        row["error"] = str(error)
        if on_failure:
            on_failure(path, error)

    with ThreadPoolExecutor(max_workers=2) as pool:
        decoded = deque(pool.submit(load_image, p) for p in paths[:PREFETCH])
        writes: deque = deque()
        for i, (path, stem) in enumerate(zip(paths, files.unique_stems(paths))):
            if i + PREFETCH < len(paths):
                decoded.append(pool.submit(load_image, paths[i + PREFETCH]))
            row = {"image": str(path)}
            rows.append(row)
            try:
                image = decoded.popleft().result()
                for notice in image.notices:
                    _note(f"{path.name}: {notice}")
                explanation = engine.explain(image, layer, class_index)
                heatmap = out_dir / f"{stem}.npy" if heatmaps else None
                writes.append((row, path, pool.submit(_write_outputs, image, explanation, out_dir / f"{stem}.png",
                                                      heatmap, alpha, colormap)))
                top_index, top_name, top_p = explanation.prediction.top[0]
                row.update(predicted_index=top_index, predicted_name=top_name, probability=f"{top_p:.6f}",
                           explained_index=explanation.class_index, explained_name=explanation.class_name,
                           explained_probability=f"{explanation.score:.6f}", layer=explanation.layer,
                           seconds=f"{explanation.seconds:.4f}")
            except GradCamError as error:
                fail(row, path, error)
            while len(writes) > PREFETCH or (writes and i == len(paths) - 1):
                done_row, done_path, future = writes.popleft()
                try:
                    future.result()
                except GradCamError as error:
                    fail(done_row, done_path, error)
            if on_done:
                on_done()
    return rows


def _batch_progress(total: int):
    if not sys.stderr.isatty():
        return None
    from rich.progress import MofNCompleteColumn, Progress

    progress = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=_stderr_console())
    progress.add_task("Explaining", total=total)
    progress.start()
    return progress


def _report_failure(progress, path: Path, error: Exception) -> None:
    line = f"Skipped {path.name}: {error}"
    if progress:
        progress.console.print(line, markup=False, highlight=False)
    else:
        print(line, file=sys.stderr)


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    files.atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


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
