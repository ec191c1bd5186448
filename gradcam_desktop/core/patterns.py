"""Strategy clusters: what a model relies on across a class (Spectral Relevance Analysis, SpRAy).

SpRAy (Lapuschkin et al., 2019, "Unmasking Clever Hans predictors and assessing what machines
really learn", Nature Communications 10:1096) clusters the attribution maps of one class: maps
that look alike are one *strategy*; a small cluster unlike the others is where a shortcut hides
(the horse class that learned a copyright watermark). The recipe, as in its reference
implementation CoRelAy (the library behind Fraunhofer's ViRelAy; ``SpectralClustering`` there):

1. ``prepare``: every raw map (any size, values ≥ 0) NaN/inf → 0, negatives → 0, resized to
   ``grid`` × ``grid`` — ``cv2.INTER_AREA`` when the map has at least ``grid`` rows and columns
   (shrinking averages whole cells, no aliasing), ``cv2.INTER_LINEAR`` otherwise (enlarging a 7 × 7
   Grad-CAM map, as the overlay does) — then divided by its sum, so a map is *where* the evidence
   lies, not how strong it is. A map without evidence (all zero after that) stays all zero:
   ``blank`` flags it. Rows of an (N, grid²) float64 array: O(N·grid²) memory, nothing else kept.
2. ``affinity``: the k nearest neighbours of every map (Euclidean distance between prepared maps,
   CoRelAy's ``SciPyPDist`` default). k = ``neighbours``, default **round(√N) between 3 and 10**,
   capped at N − 1. CoRelAy's ``SparseKNN`` default is 10, made for projects of thousands of maps;
   a desktop folder has tens of pictures per class, and there 10 neighbours reach across
   strategies: 19 maps of three planted strategies (10 + 7 + 2) gave 1 cluster in 12 of 12 draws
   with k = 10, the 3 planted ones in 12 of 12 with k = round(√19) = 4. √N grows with the class as
   a k-NN graph's k should (von Luxburg, 2007, "A tutorial on spectral clustering", 8.1: of the
   order log N at least) and is CoRelAy's 10 from 100 maps on; 3 keeps the graph of a handful of
   maps connected. Edges are weighted with the locally scaled Gaussian kernel of Zelnik-Manor &
   Perona (2004, "Self-tuning spectral clustering"), w_ij = exp(−d_ij² / (σ_i σ_j)), σ_i = the
   distance to the k-th neighbour, and symmetrised as CoRelAy does, W = (A + Aᵀ) / 2. Why weights
   where CoRelAy's edges all weigh 1: a strategy used by fewer pictures than k (three watermarked
   horses among forty pictures) must link to maps of other strategies, and with equal weights those
   links tie it to them — on planted maps (20 + 15 + 3), edges of weight 1 gave 2 clusters in 40 of
   40 draws (k = 6 or 10), weighted edges the 3 planted ones in 40 of 40. Weighted, a far link
   costs almost nothing: σ_j of a map in a big cluster is small.
   **A second graph** when no k is given: a group of k or fewer alike maps must link outside
   itself, and then often merged with the rest (4 marked maps among 34, k = 6: one cluster in 28
   of 30 draws of real Grad-CAM maps, 43–66 % of each marked map on the marker). So the graph of
   k' = round(√N / 2) between 3 and 10 is built too (when k' ≠ k: below 400 maps, so large classes
   pay nothing), each graph's eigengap chooses
   its count (4.), and the clustering of the graph whose chosen jump log((λ_c + ε) / (λ_(c−1) + ε))
   is larger is kept (ties: k's). ``benchmarks/sweep_spray.py`` (``python benchmarks/sweep_spray.py``,
   maps drawn by tests/patterns_factory.py, 50 draws a scenario) measured k alone → both graphs:
   ONE strategy of 20/40/60/200 maps one cluster in 41/49/49/50 → the same; wide jitter 50/50 →
   50/50; planted 20 + 15 + 3, 10 + 7 + 2, 40 + 30 + 5 the right clusters 50/48/50 → the same;
   marked groups as their own flagged cluster: 6 of 36 in 10 → 35, 10 of 200 in 20 → 50, 7 of 42 in
   49 → 50, 4 of 34 in 0 → 2, 3 of 40 and 5 of 60 in 0 → 0, 20 of 400 50 → 50. k' alone found more
   small groups (4 of 34 in 19 of 20) but split ONE strategy of 40 maps in 15 of 20 draws; keeping
   k's clustering and carving out k''s flagged small clusters found 4 of 34 in 46 of 50 but split
   ONE strategy of 40 in 6 of 50 (k alone: 1). Neither was adopted: a false alarm on every fifth
   class costs more trust than it wins. Groups of 3–5 among 34–60 remain mostly unseen.
3. ``spectrum``: the smallest eigenvalues and their eigenvectors of the symmetric normalised graph
   Laplacian L = I − D^-½ W D^-½ (``scipy.sparse.csgraph.laplacian(normed=True)``, the matrix
   CoRelAy's ``SymmetricNormalLaplacian`` stands for): dense ``scipy.linalg.eigh`` up to
   ``DENSE_UP_TO`` maps, ARPACK (``eigsh``) on the sparse matrix beyond. scikit-learn's
   ``spectral_embedding`` computes the same vectors but does not return the eigenvalues, which the
   eigengap needs.
4. ``eigengap``: the number of clusters is where the first ``max_clusters`` + 1 eigenvalues jump
   most — measured on a log scale, log(λ + ``EIGEN_FLOOR``), i.e. the largest *ratio*
   (λ_c + ε) / (λ_(c−1) + ε), ε = 0.01. Why not the plain difference λ_c − λ_(c−1): the
   eigenvalues inside one strategy grow steadily (from ~0.1 towards 1), so the plain largest
   difference falls anywhere among them — on 60 maps of ONE strategy it chose 3 to 8 clusters in
   20 of 20 draws, on the planted 20 + 15 + 3 the right 3 in only 4 of 20; the log scale chose 1 and
   3 in 20 of 20 each. An eigenvalue below ε (a cut worth less than 1 % of a cluster's edges) counts
   as zero. ``floor=None`` gives the plain difference. ``clusters`` overrides the eigengap.
5. k-means (scikit-learn, ``n_init=10``, ``random_state=seed``) on the spectral embedding of Ng,
   Jordan & Weiss (2001): the first ``count`` eigenvectors, each map's row scaled to length 1.
   Clusters are renumbered by size (0 = largest; ties: the one whose first map comes first).
   ``Clustering.distances``: each map's distance to its cluster's centre in that embedding (0 for a
   single cluster: there it carries no information).
6. ``embedding_2d``, for looking at, not for clustering: t-SNE (scikit-learn, ``init="pca"``,
   ``random_state=seed``, perplexity min(30, (N − 1) / 3)) of the prepared maps (reduced to 50
   principal components first when longer, as scikit-learn's TSNE documentation advises) from ``TSNE_FROM`` = 10
   maps; below that, too few for a perplexity ≥ 3, the 2nd and 3rd Laplacian eigenvectors scaled
   by D^-½ (Laplacian eigenmaps, what ``sklearn.manifold.spectral_embedding`` returns). The maps,
   not the spectral embedding, so that the picture is an independent look at whether the clusters
   are real.
7. **Outlier clusters** — "small clusters far from the rest", where shortcuts hide. Cluster c is
   flagged when there are at least two clusters and both hold:
   *small*: size_c ≤ max(2, 0.2 · N) — a fifth of the class at most: a shortcut that a minority
   of the pictures takes, not a strategy of the class (with a tenth, 4 watermarked pictures among
   24, planted in tests/cli/test_cli_patterns.py, were a cluster of their own but not flagged);
   *far*: the distance from its mean map to the nearest other cluster's mean map is at least the
   median distance between two clusters' mean maps (over all pairs).
   Distances between mean (prepared) maps, not between centres in the spectral embedding: the
   row-normalised embedding puts every well-separated cluster at about the same distance (√2) from
   every other, which says nothing about how different two strategies are. With two clusters the
   one pair is its own median, so a small one is always flagged; with more, a small cluster that
   only splits off a big one (near its parent) is not.

Degenerate inputs never raise: N = 0 → an empty clustering; N = 1 or 2, or all maps the same →
one cluster, no spectral step. Every step is deterministic for a ``seed``.

``by_class`` runs this per class; ``pattern_rows``/``cluster_rows`` and the CSV writers turn the
results into patterns.csv and clusters.csv through ``files.atomic_write_csv`` (spreadsheet-safe).
scikit-learn and SciPy are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import files

__all__ = ["CLUSTER_FIELDS", "DENSE_UP_TO", "EIGEN_FLOOR", "GRID", "MAX_CLUSTERS", "MIN_NEIGHBOURS", "NEIGHBOURS",
           "PATTERN_FIELDS", "TSNE_FROM", "ClusterRow", "Clustering", "PatternRow", "affinity", "blank", "by_class",
           "cluster_rows", "eigengap", "eigengap_jump", "mean_maps", "outlier_clusters", "pattern_rows", "prepare", "prepare_one",
           "spectrum", "spray", "write_clusters_csv", "write_patterns_csv"]

#: Side of the common grid every map is resized to (32 × 32 = 1,024 numbers a map).
GRID = 32
#: Most clusters the eigengap may choose (the issue's "at most 8").
MAX_CLUSTERS = 8
#: Neighbours of the k-NN affinity: round(√N), at least MIN_NEIGHBOURS, at most CoRelAy's default NEIGHBOURS
#: (docstring, 2.); a second graph of round(√N / 2) within the same bounds competes by its eigengap.
NEIGHBOURS = 10
MIN_NEIGHBOURS = 3
#: ε of the log-scale eigengap: eigenvalues below it count as zero (see the module's docstring, 4.).
EIGEN_FLOOR = 0.01
#: Up to this many maps the Laplacian is decomposed densely (N² float64: 18 MB at 1,500); sparse ARPACK beyond.
DENSE_UP_TO = 1500
#: Fewest maps for t-SNE's 2-D view (perplexity (N − 1) / 3 ≥ 3); fewer: Laplacian eigenmaps.
TSNE_FROM = 10
#: t-SNE's perplexity at most (its usual value), and the principal components it is given at most.
PERPLEXITY = 30.0
#: Up to this many maps t-SNE runs on one thread (_view).
TSNE_ONE_THREAD_UP_TO = 2000
TSNE_DIMENSIONS = 50
#: k-means restarts (fixed, so that a seed fixes the result).
KMEANS_INIT = 10
#: Small cluster: at most this fraction of the class's maps (and at most 2 maps when the class is small).
SMALL_SHARE = 0.2

PATTERN_FIELDS = ["image", "class", "cluster", "distance", "outlier", "inside_share"]
CLUSTER_FIELDS = ["class", "cluster", "size", "mean_inside_share", "outlier"]

# k-means on fewer distinct points than clusters (duplicated maps, clusters=K) says so; the result is
# renumbered below and the count recomputed, so the warning says nothing to the user. Installed for the
# process once, like images.py's: catch_warnings is not thread-safe, and this runs in worker threads.
warnings.filterwarnings("ignore", message=r"Number of distinct clusters", module=r"sklearn\.")


# ------------------------------------------------------------------------------------------ maps → features
def _interpolation(shape: tuple[int, int], grid: int) -> int:
    """INTER_AREA when the map has at least ``grid`` rows and columns (shrinking), INTER_LINEAR otherwise."""
    return cv2.INTER_AREA if shape[0] >= grid and shape[1] >= grid else cv2.INTER_LINEAR


def prepare_one(raw: np.ndarray, grid: int = GRID) -> np.ndarray:
    """One raw map (h, w) as a ``grid`` × ``grid`` float64 map summing to 1 (all zero if it has no evidence).

    NaN/inf → 0 and negatives → 0 first, then the resize (``_interpolation``), then the division by
    the sum. A (h, w, 1) map is taken as (h, w); anything else that is not 2-D is a ValueError.
    """
    grid = _check_grid(grid)
    m = np.asarray(raw)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"a map must be 2-D (h, w), got shape {m.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        m = np.nan_to_num(m.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(m, 0.0, out=m)
    peak = float(m.max())
    if peak <= 0.0:
        return np.zeros((grid, grid), np.float64)
    m /= peak  # a sum of huge values would overflow to inf; scaling does not change the normalised map
    if m.shape != (grid, grid):
        m = np.asarray(cv2.resize(m, (grid, grid), interpolation=_interpolation(m.shape, grid)), np.float64)
        np.maximum(m, 0.0, out=m)  # interpolation weights are ≥ 0; this only guards the last rounding bit
    total = float(m.sum())
    return m / total if total > 0.0 else np.zeros((grid, grid), np.float64)


def prepare(maps: Iterable[np.ndarray], grid: int = GRID) -> np.ndarray:
    """The features of ``maps``: (N, grid²) float64, row i = ``prepare_one(maps[i], grid)`` flattened.

    Memory: the result only (rows are written into it one map at a time when ``maps`` has a length;
    a generator's rows are collected first). A blank map gives a row of zeros (``blank`` finds them).
    """
    grid = _check_grid(grid)
    if not isinstance(maps, Sequence):
        rows = [prepare_one(m, grid).ravel() for m in maps]
        return np.stack(rows) if rows else np.zeros((0, grid * grid), np.float64)
    out = np.zeros((len(maps), grid * grid), np.float64)
    for i, m in enumerate(maps):
        out[i] = prepare_one(m, grid).ravel()
    return out


def blank(features: np.ndarray) -> np.ndarray:
    """(N,) bool: the maps that had no evidence (their prepared row is all zero, not summing to 1)."""
    features = np.asarray(features, np.float64)
    return ~np.any(features > 0.0, axis=1) if features.size else np.zeros(len(features), bool)


def _check_grid(grid: int) -> int:
    grid = int(grid)
    if not 1 <= grid <= 1024:
        raise ValueError(f"grid must be 1 to 1024 cells a side, got {grid}")
    return grid


# --------------------------------------------------------------------------------------- spectral steps
def affinity(features: np.ndarray, neighbours: int | None = None):
    """The symmetric, locally scaled k-NN affinity (scipy CSR, N × N) of prepared maps (docstring, 2.).

    w_ij = exp(−d_ij² / (σ_i σ_j)) for j among the k nearest neighbours of i (itself excluded),
    σ_i = distance to i's k-th neighbour (floored at 10⁻³ of the median σ, so that duplicated maps
    do not divide by zero), then W = (A + Aᵀ) / 2. Needs N ≥ 2.
    """
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, np.float64)
    n = len(x)
    if n < 2:
        raise ValueError(f"an affinity needs at least 2 maps, got {n}")
    k = _neighbours(n, neighbours)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()  # without each map itself
    sigma = distances[:, -1].copy()
    positive = sigma[sigma > 0]
    floor = 1e-3 * float(np.median(positive)) if positive.size else 1.0
    np.maximum(sigma, max(floor, 1e-300), out=sigma)
    rows = np.repeat(np.arange(n), k)
    cols = indices.ravel()
    weights = np.exp(-distances.ravel() ** 2 / (sigma[rows] * sigma[cols]))
    a = sparse.csr_matrix((weights, (rows, cols)), shape=(n, n))
    return ((a + a.T) * 0.5).tocsr()


def _fewer_neighbours(n: int) -> int:
    """The second graph's k: round(√N / 2) between ``MIN_NEIGHBOURS`` and ``NEIGHBOURS`` (docstring, 2.)."""
    return min(NEIGHBOURS, max(MIN_NEIGHBOURS, round(math.sqrt(n) / 2)))


def eigengap_jump(values: np.ndarray, count: int, max_clusters: int) -> float:
    """The eigengap's jump after ``count`` eigenvalues on its log scale: log((λ_c + ε) / (λ_(c−1) + ε))."""
    logs = np.log(np.maximum(np.asarray(values, np.float64)[: max(1, int(max_clusters)) + 1], 0.0) + EIGEN_FLOOR)
    return float(logs[count] - logs[count - 1]) if len(logs) > count else 0.0


def _neighbours(n: int, neighbours: int | None) -> int:
    """k: ``neighbours`` or round(√N) between ``MIN_NEIGHBOURS`` and ``NEIGHBOURS``; capped at N − 1."""
    k = min(NEIGHBOURS, max(MIN_NEIGHBOURS, round(math.sqrt(n)))) if neighbours is None else int(neighbours)
    if k < 1:
        raise ValueError(f"neighbours must be at least 1, got {k}")
    return max(1, min(k, n - 1))


def spectrum(adjacency, count: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest eigenvalues (ascending, ≥ 0) and eigenvectors (N, count) of the symmetric
    normalised Laplacian of ``adjacency`` (a symmetric non-negative N × N matrix, dense or sparse).

    A node without edges has a zero row (scipy's convention): it is a component of its own.
    """
    from scipy import sparse
    from scipy.sparse.csgraph import laplacian

    w = sparse.csr_matrix(adjacency, dtype=np.float64)
    n = w.shape[0]
    count = max(1, min(int(count), n))
    lap = laplacian(w, normed=True)
    if n <= DENSE_UP_TO or count >= n - 1:
        from scipy.linalg import eigh

        dense = lap.toarray()
        values, vectors = eigh((dense + dense.T) * 0.5, subset_by_index=[0, count - 1])
    else:
        values, vectors = _sparse_smallest(lap, count, seed)
    order = np.argsort(values, kind="stable")
    return np.clip(values[order], 0.0, 2.0), vectors[:, order]


def _sparse_smallest(lap, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The smallest eigenpairs of a sparse normalised Laplacian (eigenvalues in [0, 2]) as the largest
    of 2I − L, whose eigenvalues are ≥ 0 (ARPACK's "largest magnitude" is then "largest"); LOBPCG if
    ARPACK does not converge."""
    from scipy import sparse
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh, lobpcg

    n = lap.shape[0]
    shifted = (2.0 * sparse.identity(n, format="csr") - lap).tocsr()
    start = np.random.default_rng(seed).uniform(0.5, 1.5, n)
    try:
        values, vectors = eigsh(shifted, k=count, which="LA", v0=start, maxiter=max(1000, 20 * n))
    except ArpackNoConvergence:
        block = np.random.default_rng(seed).standard_normal((n, count))
        values, vectors = lobpcg(shifted, block, largest=True, maxiter=500, tol=1e-8)
    return 2.0 - np.asarray(values), np.asarray(vectors)


def eigengap(eigenvalues: Sequence[float] | np.ndarray, max_clusters: int = MAX_CLUSTERS,
             floor: float | None = EIGEN_FLOOR) -> int:
    """The number of clusters c in 1..min(max_clusters, len − 1) after which the eigenvalues jump most.

    Gaps between consecutive eigenvalues among the first ``max_clusters`` + 1 (ascending), on the log
    scale log(λ + ``floor``), or plain differences with ``floor=None`` (docstring, 4.). The first of
    equal gaps wins. Fewer than two eigenvalues: 1.
    """
    values = np.sort(np.maximum(np.nan_to_num(np.asarray(eigenvalues, np.float64), nan=0.0), 0.0))
    values = values[: max(1, int(max_clusters)) + 1]
    if len(values) < 2:
        return 1
    scaled = values if floor is None else np.log(values + float(floor))
    return int(np.argmax(np.diff(scaled))) + 1


# ------------------------------------------------------------------------------------------- clustering
@dataclass(frozen=True)
class Clustering:
    """The strategies of one class's maps. Arrays are in the order the maps were given.

    ``labels`` (N,) cluster of each map, 0 = the largest cluster; ``count`` clusters, ``sizes``
    (count,) maps in each; ``eigenvalues`` the smallest Laplacian eigenvalues that were computed
    (empty when there was no spectral step); ``embedding_2d`` (N, 2) to look at; ``distances`` (N,)
    each map's distance to its cluster's centre in the spectral embedding; ``outlier_clusters``
    the small far clusters (``outlier_clusters``'s rule).
    """

    labels: np.ndarray
    count: int
    eigenvalues: np.ndarray
    embedding_2d: np.ndarray
    distances: np.ndarray
    outlier_clusters: frozenset[int] = field(default_factory=frozenset)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def members(self, cluster: int) -> np.ndarray:
        """Indices (into the maps given) of the maps in ``cluster``."""
        return np.flatnonzero(self.labels == cluster)


def _empty_clustering() -> Clustering:
    return Clustering(np.zeros(0, np.int64), 0, np.zeros(0), np.zeros((0, 2)), np.zeros(0), frozenset(),
                      np.zeros(0, np.int64))


def _one_cluster(x: np.ndarray) -> Clustering:
    """N = 1, 2 or identical maps: one cluster; the 2-D view puts two different maps ±½ their distance apart."""
    n = len(x)
    view = np.zeros((n, 2))
    if n == 2:
        half = 0.5 * float(np.linalg.norm(x[1] - x[0]))
        view[:, 0] = [-half, half]
    return Clustering(np.zeros(n, np.int64), 1, np.zeros(0), view, np.zeros(n), frozenset(),
                      np.array([n], np.int64))


def spray(features: np.ndarray, *, clusters: int | None = None, max_clusters: int = MAX_CLUSTERS,
          neighbours: int | None = None, seed: int = 0, view: bool = True) -> Clustering:
    """SpRAy on prepared maps (``prepare``'s (N, grid²) rows): the clusters of the module's docstring.

    ``clusters`` fixes the number of clusters (capped at N) instead of the eigengap's choice among
    1..``max_clusters``; ``neighbours`` the k of the k-NN affinity (capped at N − 1; default round(√N)
    between ``MIN_NEIGHBOURS`` and ``NEIGHBOURS``, and then, without ``clusters``, also the graph of
    round(√N / 2), the one with the larger eigengap jump kept: docstring, 2.); ``seed`` k-means',
    t-SNE's and ARPACK's. Never raises on degenerate data.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, grid²), got shape {x.shape}")
    if max_clusters < 1:
        raise ValueError(f"max_clusters must be at least 1, got {max_clusters}")
    if clusters is not None and clusters < 1:
        raise ValueError(f"clusters must be at least 1, got {clusters}")
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    n = len(x)
    if n == 0:
        return _empty_clustering()
    if n <= 2 or _all_same(x):
        return _one_cluster(x)

    wanted = max_clusters if clusters is None else max(max_clusters, clusters)
    adjacency = affinity(x, neighbours)
    values, vectors = spectrum(adjacency, min(n, wanted + 1), seed=seed)
    count = eigengap(values, max_clusters) if clusters is None else min(int(clusters), n)
    fewer = _neighbours(n, _fewer_neighbours(n))
    if clusters is None and neighbours is None and fewer != _neighbours(n, None):
        # The second graph (docstring, 2.): kept when its eigengap jumps further (ties: the first).
        other = affinity(x, fewer)
        other_values, other_vectors = spectrum(other, min(n, wanted + 1), seed=seed)
        other_count = eigengap(other_values, max_clusters)
        if eigengap_jump(other_values, other_count, max_clusters) > eigengap_jump(values, count, max_clusters):
            adjacency, values, vectors, count = other, other_values, other_vectors, other_count
    labels, distances = _kmeans(vectors[:, :count], count, seed)
    count = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=count).astype(np.int64)
    # The 2-D view is only looked at (the window's scatter): t-SNE was most of the clustering's time
    # at 10,000 maps, so callers that show no view skip it (zeros).
    shown = _view(x, adjacency, vectors, seed) if view else np.zeros((n, 2))
    return Clustering(labels, count, values, shown, distances, outlier_clusters(x, labels), sizes)


def _all_same(x: np.ndarray) -> bool:
    return bool(np.all(np.abs(x - x[0]) <= 1e-12 * max(1.0, float(np.abs(x).max()))))


def _kmeans(vectors: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ng–Jordan–Weiss: rows of the first ``count`` eigenvectors scaled to length 1, then k-means; labels
    renumbered by size (then by first member), each row's distance to its cluster's mean row."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    n = len(rows)
    if count <= 1:
        return np.zeros(n, np.int64), np.zeros(n)
    from sklearn.cluster import KMeans

    raw = KMeans(n_clusters=count, n_init=KMEANS_INIT, random_state=seed).fit_predict(rows)
    labels = _renumber(raw)
    centres = np.stack([rows[labels == c].mean(axis=0) for c in range(int(labels.max()) + 1)])
    return labels, np.linalg.norm(rows - centres[labels], axis=1)


def _renumber(raw: np.ndarray) -> np.ndarray:
    """Labels 0..c−1 by decreasing size, ties by the first map of each cluster (a stable, seed-free order)."""
    found = np.unique(raw)
    order = sorted(found, key=lambda c: (-int(np.sum(raw == c)), int(np.flatnonzero(raw == c)[0])))
    mapping = {int(c): i for i, c in enumerate(order)}
    return np.array([mapping[int(c)] for c in raw], np.int64)


def _view(x: np.ndarray, adjacency, vectors: np.ndarray, seed: int) -> np.ndarray:
    """The 2-D view (docstring, 6.): t-SNE of the maps from ``TSNE_FROM`` maps, Laplacian eigenmaps below."""
    n = len(x)
    if n >= TSNE_FROM:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        data = x
        if x.shape[1] > TSNE_DIMENSIONS and n > TSNE_DIMENSIONS:
            data = PCA(n_components=TSNE_DIMENSIONS, random_state=seed).fit_transform(x)
        tsne = TSNE(n_components=2, perplexity=min(PERPLEXITY, (n - 1) / 3.0), init="pca", random_state=seed)
        if n > TSNE_ONE_THREAD_UP_TO:
            return np.asarray(tsne.fit_transform(data), np.float64)
        from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

        # One OpenMP thread: a few hundred maps take a fraction of a second alone, but the gradient
        # steps' threads waited on each other for 7-13 s on 42 maps when the machine was busy.
        with threadpool_limits(limits=1, user_api="openmp"):
            return np.asarray(tsne.fit_transform(data), np.float64)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    scale = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    view = np.zeros((n, 2))
    extra = vectors[:, 1:3] * scale[:, None]
    view[:, : extra.shape[1]] = extra
    for column in range(2):  # an eigenvector's sign is arbitrary: fix it (largest entry positive)
        if view[np.argmax(np.abs(view[:, column])), column] < 0:
            view[:, column] *= -1
    return view


def outlier_clusters(features: np.ndarray, labels: np.ndarray) -> frozenset[int]:
    """The small clusters far from the rest (docstring, 7.): size ≤ max(2, 0.2·N) and the distance from
    its mean map to the nearest other cluster's ≥ the median distance between two clusters' mean maps."""
    x = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        return frozenset()
    count = int(labels.max()) + 1
    if count < 2:
        return frozenset()
    sizes = np.bincount(labels, minlength=count)
    centres = np.stack([x[labels == c].mean(axis=0) if sizes[c] else np.zeros(x.shape[1]) for c in range(count)])
    between = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    median = float(np.median(between[np.triu_indices(count, 1)]))
    np.fill_diagonal(between, np.inf)
    nearest = between.min(axis=1)
    small = max(2.0, SMALL_SHARE * n)
    return frozenset(c for c in range(count) if sizes[c] and sizes[c] <= small and nearest[c] >= median)


def mean_maps(maps_prepared: np.ndarray, labels: np.ndarray, grid: int = GRID) -> dict[int, np.ndarray]:
    """The mean prepared map of each cluster, (grid, grid) float64 (each sums to 1 unless all its maps are blank)."""
    x = np.asarray(maps_prepared, np.float64)
    labels = np.asarray(labels)
    grid = _check_grid(grid)
    if x.ndim != 2 or x.shape[1] != grid * grid or len(x) != len(labels):
        raise ValueError(f"{x.shape} features for {len(labels)} labels on a {grid} × {grid} grid")
    return {int(c): x[labels == c].mean(axis=0).reshape(grid, grid) for c in np.unique(labels)}


def by_class(class_of_each: Sequence[int], features: np.ndarray, **options) -> dict[int, Clustering]:
    """``spray`` for every class in ``class_of_each`` (one int per row of ``features``, prepare's output).

    Class c's clustering is over the rows where ``class_of_each == c``, in their order; keys ascend.
    ``options`` go to ``spray`` (clusters, max_clusters, neighbours, seed).
    """
    classes = np.asarray(class_of_each, np.int64).reshape(-1)
    x = np.asarray(features, np.float64)
    if len(classes) != len(x):
        raise ValueError(f"{len(classes)} classes for {len(x)} maps")
    return {int(c): spray(x[classes == c], **options) for c in np.unique(classes)}


# ------------------------------------------------------------------------------------------ rows and CSVs
@dataclass
class PatternRow:
    """One picture in patterns.csv. ``inside_share`` NaN = unknown (no object mask), written blank."""

    image: str
    class_index: int
    class_name: str
    cluster: int
    distance: float
    outlier: bool
    inside_share: float = math.nan

    def csv_row(self) -> list[object]:
        return [self.image, self.class_name, self.cluster, _number(self.distance),
                "true" if self.outlier else "false", _number(self.inside_share)]


@dataclass
class ClusterRow:
    """One cluster in clusters.csv. ``mean_inside_share`` NaN = no member has a known inside share."""

    class_index: int
    class_name: str
    cluster: int
    size: int
    mean_inside_share: float
    outlier: bool

    def csv_row(self) -> list[object]:
        return [self.class_name, self.cluster, self.size, _number(self.mean_inside_share),
                "true" if self.outlier else "false"]


def _number(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def _class_name(index: int, class_names: Sequence[str] | None) -> str:
    return class_names[index] if class_names is not None and 0 <= index < len(class_names) else str(index)


def pattern_rows(images: Sequence[str], class_of_each: Sequence[int], clusterings: Mapping[int, Clustering], *,
                 class_names: Sequence[str] | None = None,
                 inside_shares: Sequence[float] | None = None) -> list[PatternRow]:
    """One row per picture, in the order given: ``clusterings`` as ``by_class`` returned them for the same
    ``class_of_each``; ``class_names`` name the classes (else their index); ``inside_shares`` one per picture."""
    classes = np.asarray(class_of_each, np.int64).reshape(-1)
    if len(classes) != len(images) or (inside_shares is not None and len(inside_shares) != len(images)):
        raise ValueError(f"{len(images)} pictures, {len(classes)} classes, "
                         f"{len(inside_shares) if inside_shares is not None else 'no'} inside shares")
    rows: list[PatternRow | None] = [None] * len(images)
    for c, clustering in clusterings.items():
        members = np.flatnonzero(classes == c)
        if len(members) != len(clustering.labels):
            raise ValueError(f"class {c}: a clustering of {len(clustering.labels)} maps for {len(members)} pictures")
        for position, i in enumerate(members.tolist()):
            label = int(clustering.labels[position])
            share = math.nan if inside_shares is None else float(inside_shares[i])
            rows[i] = PatternRow(images[i], int(c), _class_name(int(c), class_names), label,
                                 float(clustering.distances[position]), label in clustering.outlier_clusters, share)
    missing = [i for i, row in enumerate(rows) if row is None]
    if missing:
        raise ValueError(f"no clustering for class {int(classes[missing[0]])} (picture {images[missing[0]]})")
    return rows  # type: ignore[return-value]


def cluster_rows(clusterings: Mapping[int, Clustering], rows: Sequence[PatternRow] = (), *,
                 class_names: Sequence[str] | None = None) -> list[ClusterRow]:
    """One row per cluster of every class (classes ascending): its size, outlier flag and the mean of its
    pictures' known inside shares (from ``rows``; NaN when none is known)."""
    shares: dict[tuple[int, int], list[float]] = {}
    for row in rows:
        if not math.isnan(row.inside_share):
            shares.setdefault((row.class_index, row.cluster), []).append(row.inside_share)
    out: list[ClusterRow] = []
    for c in sorted(clusterings):
        clustering = clusterings[c]
        for cluster in range(clustering.count):
            known = shares.get((int(c), cluster), [])
            mean = float(np.mean(known)) if known else math.nan
            out.append(ClusterRow(int(c), _class_name(int(c), class_names), cluster, int(clustering.sizes[cluster]),
                                  mean, cluster in clustering.outlier_clusters))
    return out


def write_patterns_csv(path: str | os.PathLike[str], rows: Iterable[PatternRow]) -> None:
    """patterns.csv (``PATTERN_FIELDS``), streamed and atomic through ``files.atomic_write_csv``."""
    files.atomic_write_csv(path, PATTERN_FIELDS, (row.csv_row() for row in rows))


def write_clusters_csv(path: str | os.PathLike[str], rows: Iterable[ClusterRow]) -> None:
    """clusters.csv (``CLUSTER_FIELDS``), streamed and atomic through ``files.atomic_write_csv``."""
    files.atomic_write_csv(path, CLUSTER_FIELDS, (row.csv_row() for row in rows))
