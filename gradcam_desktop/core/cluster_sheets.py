"""One picture per strategy cluster: its mean map, then the pictures nearest its centre with their maps.

``gradcam patterns`` writes them as ``clusters/<class>-cluster<k>.png``; the report embeds them.
The member tiles show each picture with its own SpRAy grid (the 32 × 32 map kept for clustering)
upsampled over it; the mean map's tile has a grey background (it is no picture's).
"""

from __future__ import annotations

import cv2
import numpy as np

from . import files, overlay, patterns
from .errors import GradCamError
from .folder_patterns import Analysis
from .images import load_image

__all__ = ["MEMBERS", "TILE", "cluster_sheets", "safe_stem"]

#: Member pictures drawn beside a cluster's mean map (those nearest its centre).
MEMBERS = 4
TILE = 160  # pixels a side of each tile in a cluster's PNG


def cluster_sheets(found: Analysis, colormap: str) -> dict[tuple[int, int], tuple[str, bytes]]:
    """One PNG a cluster, {(class, cluster): (file stem, PNG bytes)}: its mean map, then the ``MEMBERS``
    pictures nearest its centre with their maps."""
    sheets: dict[tuple[int, int], tuple[str, bytes]] = {}
    names, done, clusterings = found.names, found.done, found.clusterings
    order = np.asarray([item.class_index for item in done])
    stems = files.unique_stems([f"{safe_stem(names[c] if c < len(names) else str(c))}-cluster{k}"
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
                    tiles.append(_member_tile(done[rows[position]].image, found.features[rows[position]], colormap))
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


def _member_tile(path: str, features: np.ndarray, colormap: str) -> np.ndarray:
    """A member picture with its SpRAy grid upsampled over it."""
    image = load_image(path)
    rgb = cv2.resize(image.rgb, (TILE, TILE), interpolation=cv2.INTER_AREA)
    grid = features.reshape(patterns.GRID, patterns.GRID).astype(np.float32)
    display, _flat = overlay.display_map(grid, (TILE, TILE))
    return overlay.blend(rgb, display, 0.5, colormap)


def _sheet(tiles: list[np.ndarray], title: str) -> np.ndarray:
    gap = np.full((TILE, 6, 3), 255, np.uint8)
    row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    band = np.full((28, row.shape[1], 3), 255, np.uint8)
    cv2.putText(band, title, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([band, row], axis=0)


def safe_stem(name: str) -> str:
    """A class name as a file stem: letters, digits, - and _ only, at most 40 characters."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40] or "class"
