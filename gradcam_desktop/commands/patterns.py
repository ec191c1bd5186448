"""``gradcam patterns``: what does the model rely on for each class, across a labelled folder?

Every picture's map — of its predicted class, or with ``--by true`` of its labelled class — is
computed in batches and kept only as SpRAy's 32 × 32 normalised grid; each class's maps are then
clustered (spectral clustering, the number of clusters from the eigengap, ``--clusters K`` to fix
it): core/folder_patterns.py runs it a group of pictures at a time, this module drives it with a
progress bar. With ``--masks DIR`` (``<stem>.png``, non-zero = the object), ``--boxes CSV``
(``path,x0,y0,x1,y1``) or the boxes marked in the window (``<picture>.object.json``), each map also
gets its **inside share** — the map's energy inside the object over its total
(core/inside_share.py). Writes patterns.csv (a row a picture), clusters.csv (a row a cluster) and
one PNG a cluster (core/cluster_sheets.py: its mean map and the pictures nearest its centre) into
--out-dir, and prints the clusters, flagging the small far ones. With ``--ray [ADDRESS]`` the
pictures are predicted and mapped by a Ray actor pool (core/ray_folder.py, docs/SCALING.md) and
clustered here: the same ``Analysis``, the same files.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from ..core import cams, files, patterns, ray_folder
from ..core.batch import make_out_dir
from ..core.cluster_sheets import cluster_sheets
from ..core.errors import GradCamError
from ..core.folder_patterns import Analysis, PatternsRun
from ..core.gradcam import GradCam
from ..core.inside_share import boxes_from_csv
from . import shared

__all__ = ["analyse", "run"]


def analyse(args) -> tuple[Any, GradCam, Analysis]:
    """Check the options, open the model, predict and map every labelled picture, cluster each class:
    (the model opened, its engine, the ``Analysis``). Nothing is written: --out-dir is only checked."""
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
    address = getattr(args, "ray", None)  # gradcam report has no --ray
    if address:
        ray_folder.check(address)
    loaded, engine, labels = shared.open_labelled(args)
    method = shared.settle_method(engine, args, {"method": chosen})
    if address:
        return loaded, engine, _analyse_on_ray(args, address, engine, labels.pictures, method, boxes)
    bar = shared.count_bar("Mapping", len(labels.pictures))
    run = PatternsRun(engine, labels.pictures, method=method, layer=args.layer, by=args.by, masks_dir=args.masks,
                      boxes=boxes, clusters=args.clusters, seed=0, say=lambda line: shared.say(bar, line),
                      view=False)  # the command shows no 2-D view: no t-SNE
    interrupted = False
    try:
        while rows := run.step():
            if bar is not None:
                bar.advance(bar.task_ids[0], len(rows))
    except KeyboardInterrupt:
        interrupted = True  # the maps made so far are still clustered
    finally:
        run.close()
        if bar is not None:
            bar.stop()
    return loaded, engine, run.finish(interrupted=interrupted)


def _analyse_on_ray(args, address: str, engine: GradCam, pictures, method: cams.Method, boxes) -> Analysis:
    """``analyse``'s loop on a Ray actor pool: the pictures predicted and mapped by the workers, the
    progress bar and the skipped pictures' lines here, the clustering here (the same ``Analysis``)."""
    pieces: list[ray_folder.Piece] = []
    interrupted = False
    with ray_folder.connected(address, quiet=not args.debug):
        bar = shared.count_bar("Mapping", len(pictures))
        worker = ray_folder.WorkerModel(args.model, trust=args.trust_model, preprocess=args.preprocess,
                                        custom_objects=args.custom_objects,
                                        output=getattr(args, "output", None))
        try:
            for piece in ray_folder.map_folder(pictures, worker, method=method.name, layer=args.layer, by=args.by,
                                               masks_dir=args.masks, boxes=boxes):
                pieces.append(piece)
                for line in piece.notes:
                    shared.say(bar, line)
                if bar is not None:
                    bar.advance(bar.task_ids[0])
        except KeyboardInterrupt:
            interrupted = True  # the maps made so far are still clustered
        finally:
            if bar is not None:
                bar.stop()
    return ray_folder.analysis(pieces, method=method, names=engine.class_names, total=len(pictures), by=args.by,
                               clusters=args.clusters, seed=0, interrupted=interrupted)


def run(args) -> int:
    """Map every labelled picture, cluster each class's maps, write the tables and pictures; print the clusters."""
    shared.check_output_path(args.out_dir, "--out-dir", folder=True)
    _loaded, _engine, found = analyse(args)
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


def _print_clusters(table, mapped: int, skipped: int, method: str, by: str) -> None:
    print(f"{mapped} picture{'s' if mapped != 1 else ''} mapped with {method} "
          f"({'labelled' if by == 'true' else 'predicted'} class){f', {skipped} skipped' if skipped else ''}:")
    for row in table:
        share = "" if math.isnan(row.mean_inside_share) else f", inside share {row.mean_inside_share:.0%}"
        flag = "   ← small and far from the others: look at it" if row.outlier else ""
        print(f"  {row.class_name}: cluster {row.cluster}, {row.size} picture{'s' if row.size != 1 else ''}{share}{flag}")
