"""``gradcam patterns``: what does the model rely on for each class, across a labelled folder?

Every picture's map — of its predicted class, or with ``--by true`` of its labelled class — is
computed in batches (``GradCam.explain_many``, groups of ``GROUP``) and kept only as SpRAy's
32 × 32 normalised grid (core/patterns.py: 8 KB a picture, the pictures themselves are let go);
each class's maps are then clustered (spectral clustering, the number of clusters from the
eigengap, ``--clusters K`` to fix it). With ``--masks DIR`` (``<stem>.png``, non-zero = the object)
or ``--boxes CSV`` (``path,x0,y0,x1,y1``), each map also gets its **inside share** — the map's
energy inside the object over its total (core/inside_share.py). Writes patterns.csv (a row a
picture), clusters.csv (a row a cluster) and one PNG a cluster (its mean map and the pictures
nearest its centre) into --out-dir, and prints the clusters, flagging the small far ones.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..core import cams, files, overlay, patterns
from ..core.batch import make_out_dir
from ..core.errors import GradCamError
from ..core.gradcam import GradCam
from ..core.images import load_image
from ..core.inside_share import boxes_from_csv, inside_share, object_mask
from ..core.triage import TriageRow, triage
from . import shared

__all__ = ["GROUP", "MEMBERS", "Analysis", "analyse", "cluster_sheets", "run"]

#: Pictures per batched map call.
GROUP = 16
#: Member pictures drawn beside a cluster's mean map (those nearest its centre).
MEMBERS = 4
TILE = 160  # pixels a side of each tile in a cluster's PNG


@dataclass
class _Done:
    """What is kept of one mapped picture: its path, the class its map explains, SpRAy's grid, its inside share."""

    image: str
    class_index: int
    features: np.ndarray
    share: float


@dataclass
class Analysis:
    """A labelled folder mapped and clustered: what ``gradcam patterns`` writes and ``gradcam report`` shows."""

    loaded: Any
    engine: GradCam
    method: cams.Method
    names: list[str]
    triage_rows: list[TriageRow]  # every picture's prediction (accuracy, confusion matrix, mistakes)
    done: list[_Done]  # the pictures mapped
    features: np.ndarray  # their SpRAy grids, (len(done), GRID²)
    clusterings: dict[int, patterns.Clustering]
    pattern_rows: list[patterns.PatternRow]
    cluster_rows: list[patterns.ClusterRow]
    skipped: int
    interrupted: bool
    total: int  # pictures listed


def analyse(args) -> Analysis:
    """Check the options, open the model, predict and map every labelled picture, cluster each class.
    (Nothing is written: --out-dir is only checked.)"""
    try:
        import sklearn  # noqa: F401 - only to know whether the extra is installed
    except ImportError:
        raise GradCamError('Clustering maps needs scikit-learn: pip install "gradcam-desktop[patterns]".') from None
    chosen = cams.method(args.method or shared.DEFAULT_METHOD)
    if args.clusters is not None and not 1 <= args.clusters <= 50:
        raise GradCamError(f"--clusters must be between 1 and 50, not {args.clusters}.")
    boxes = boxes_from_csv(args.boxes) if args.boxes else None
    if args.masks and not Path(args.masks).is_dir():
        raise GradCamError(f"--masks {shared.one_line(args.masks)} is not a folder.")
    loaded, engine, labels = shared.open_labelled(args)
    method = shared.settle_method(engine, args, {"method": chosen})
    done: list[_Done] = []
    triage_rows: list[TriageRow] = []
    skipped = 0
    waiting: list[tuple[str, int]] = []  # (path, class) of pictures predicted and not yet mapped
    bar = shared.count_bar("Mapping", len(labels.pictures))
    interrupted = False
    try:
        for row in triage(engine, labels.pictures):
            triage_rows.append(row)
            if row.error:
                skipped += 1
                shared.say(bar, f"Skipped: {row.error}")
            else:
                waiting.append((row.image, row.true_index if args.by == "true" else row.predicted_index))
            if len(waiting) == GROUP:
                skipped += _map_group(engine, waiting, args, method, boxes, done, bar)
                waiting = []
            if bar is not None:
                bar.advance(bar.task_ids[0])
        skipped += _map_group(engine, waiting, args, method, boxes, done, bar)
    except KeyboardInterrupt:
        interrupted = True  # the maps made so far are still clustered
    finally:
        if bar is not None:
            bar.stop()
    classes = [item.class_index for item in done]
    features = np.stack([item.features for item in done]) if done else np.zeros((0, patterns.GRID ** 2))
    clusterings = patterns.by_class(classes, features, clusters=args.clusters, seed=0)
    names = list(loaded.class_names)
    rows = patterns.pattern_rows([item.image for item in done], classes, clusterings, class_names=names,
                                 inside_shares=[item.share for item in done])
    table = patterns.cluster_rows(clusterings, rows, class_names=names)
    return Analysis(loaded, engine, method, names, triage_rows, done, features, clusterings, rows, table, skipped,
                    interrupted, len(labels.pictures))


def run(args) -> int:
    """Map every labelled picture, cluster each class's maps, write the tables and pictures; print the clusters."""
    shared.check_output_path(args.out_dir, "--out-dir", folder=True)
    found = analyse(args)
    out_dir = make_out_dir(args.out_dir)
    patterns.write_patterns_csv(out_dir / "patterns.csv", found.pattern_rows)
    patterns.write_clusters_csv(out_dir / "clusters.csv", found.cluster_rows)
    sheets = cluster_sheets(found, args.colormap)
    pictures: dict[tuple[int, int], str] = {}
    if sheets:
        (out_dir / "clusters").mkdir(exist_ok=True)
    for (class_index, cluster), (stem, png) in sheets.items():
        path = out_dir / "clusters" / f"{stem}.png"
        files.atomic_write_bytes(path, png)
        pictures[(class_index, cluster)] = str(path)
    table = found.cluster_rows
    if args.json:
        print(json.dumps({"pictures": len(found.done), "skipped": found.skipped, "method": found.method.name,
                          "by": args.by,
                          "clusters": [{"class": r.class_name, "cluster": r.cluster, "size": r.size,
                                        "outlier": r.outlier, "picture": pictures.get((r.class_index, r.cluster)),
                                        "mean_inside_share": None if math.isnan(r.mean_inside_share)
                                        else r.mean_inside_share} for r in table]}))
    else:
        _print_clusters(table, len(found.done), found.skipped, found.method.title, args.by)
        print(f"patterns.csv, clusters.csv and {len(pictures)} cluster picture{'s' if len(pictures) != 1 else ''} "
              f"→ {out_dir}")
    if found.interrupted:
        print(f"Interrupted after {len(found.done)} of {found.total} pictures; the tables cluster those.",
              file=sys.stderr)
        return 130
    return 1 if found.skipped else 0


def _map_group(engine: GradCam, group: list[tuple[str, int]], args, method: cams.Method, boxes,
               done: list[_Done], bar) -> int:
    """The maps of a group of pictures in one batched call (one by one when that fails: one bad
    picture is one skipped picture); returns how many were skipped."""
    if not group:
        return 0
    images, kept = [], []
    for path, class_index in group:
        try:
            images.append(load_image(path))
            kept.append((path, class_index))
        except GradCamError as error:
            shared.say(bar, f"Skipped {Path(path).name}: {error}")
    skipped = len(group) - len(kept)
    options = {"layer": args.layer, "method": method}
    try:
        results = engine.explain_many(images, class_indices=[c for _p, c in kept], batch_size=GROUP, **options)
    except GradCamError:
        results = []
        for image, (_path, class_index) in zip(images, kept):
            try:
                results.append(engine.explain(image, class_index=class_index, **options))
            except GradCamError as error:
                shared.say(bar, f"No map for {image.name}: {error}")
                results.append(None)
    for image, (path, class_index), result in zip(images, kept, results):
        if result is None:
            skipped += 1
            continue
        share = math.nan
        mask = None
        if args.masks or boxes is not None:
            try:
                mask = object_mask(path, image.rgb.shape[:2], masks_dir=args.masks, boxes=boxes)
            except GradCamError as error:
                shared.say(bar, f"No inside share for {image.name}: {error}")
        if mask is not None:
            share = inside_share(result.raw, mask, image.rgb.shape[:2])
        done.append(_Done(path, class_index, patterns.prepare_one(result.raw).reshape(-1), share))
    return skipped


def cluster_sheets(found: Analysis, colormap: str) -> dict[tuple[int, int], tuple[str, bytes]]:
    """One PNG a cluster, {(class, cluster): (file stem, PNG bytes)}: its mean map, then the ``MEMBERS``
    pictures nearest its centre with their maps."""
    sheets: dict[tuple[int, int], tuple[str, bytes]] = {}
    names, done, clusterings = found.names, found.done, found.clusterings
    order = np.asarray([item.class_index for item in done])
    stems = files.unique_stems([f"{_safe(names[c] if c < len(names) else str(c))}-cluster{k}"
                                for c, clustering in sorted(clusterings.items()) for k in range(clustering.count)])
    stem_at = iter(stems)
    for class_index, clustering in sorted(clusterings.items()):
        rows = np.flatnonzero(order == class_index)
        means = patterns.mean_maps(found.features[rows], clustering.labels)
        for cluster in range(clustering.count):
            members = clustering.members(cluster)
            nearest = members[np.argsort(clustering.distances[members], kind="stable")][:MEMBERS]
            tiles = [_mean_tile(means[cluster], colormap)]
            for position in nearest:
                try:
                    tiles.append(_member_tile(done[rows[position]], colormap))
                except GradCamError:
                    continue  # the picture went away since it was mapped: its tile is left out
            name = names[class_index] if class_index < len(names) else str(class_index)
            title = (f"{name} - cluster {cluster}: {int(clustering.sizes[cluster])} picture"
                     f"{'s' if clustering.sizes[cluster] != 1 else ''}"
                     f"{' - small and far: look at it' if cluster in clustering.outlier_clusters else ''}")
            stem = next(stem_at)
            sheets[(class_index, cluster)] = (stem, files.png_bytes(f"{stem}.png", _sheet(tiles, title)))
    return sheets


def _mean_tile(mean: np.ndarray, colormap: str) -> np.ndarray:
    """The cluster's mean map alone, coloured (grey background: it is no picture's)."""
    grey = np.full((TILE, TILE, 3), 128, np.uint8)
    display, _flat = overlay.display_map(mean.astype(np.float32), (TILE, TILE))
    return overlay.blend(grey, display, 0.85, colormap)


def _member_tile(item: _Done, colormap: str) -> np.ndarray:
    image = load_image(item.image)
    rgb = cv2.resize(image.rgb, (TILE, TILE), interpolation=cv2.INTER_AREA)
    grid = item.features.reshape(patterns.GRID, patterns.GRID).astype(np.float32)
    display, _flat = overlay.display_map(grid, (TILE, TILE))
    return overlay.blend(rgb, display, 0.5, colormap)


def _sheet(tiles: list[np.ndarray], title: str) -> np.ndarray:
    gap = np.full((TILE, 6, 3), 255, np.uint8)
    row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    band = np.full((28, row.shape[1], 3), 255, np.uint8)
    cv2.putText(band, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([band, row], axis=0)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "class"


def _print_clusters(table, mapped: int, skipped: int, method: str, by: str) -> None:
    print(f"{mapped} picture{'s' if mapped != 1 else ''} mapped with {method} "
          f"({'labelled' if by == 'true' else 'predicted'} class){f', {skipped} skipped' if skipped else ''}:")
    for row in table:
        share = "" if math.isnan(row.mean_inside_share) else f", inside share {row.mean_inside_share:.0%}"
        flag = "   ← small and far from the others: look at it" if row.outlier else ""
        print(f"  {row.class_name}: cluster {row.cluster}, {row.size} picture{'s' if row.size != 1 else ''}{share}{flag}")
