"""SpRAy's choice of k (the k-NN graph's neighbours), swept over planted map sets.

    python benchmarks/sweep_spray.py [--draws 20] [--rules all|name,name] [--scenarios all|name,name]

Every scenario is a set of raw maps drawn by tests/patterns_factory.py (plain NumPy: blobs with
jitter and noise; no model) for draws 0, 1, …; every rule is a way of building SpRAy's affinity
(core/patterns.py, steps 2–5; everything else as there: the log-scale eigengap, k-means on the
Ng–Jordan–Weiss embedding with seed 0, ``outlier_clusters``). Printed: scenario × rule → successes /
draws, where success is

* ``one`` / ``wide``: ONE strategy (tight, or drawn loosely) → 1 cluster (no false alarm);
* ``planted … clusters``: the planted strategies → as many clusters, each strategy exactly one cluster
  (adjusted Rand index 1); ``… +flagged``: that, and the smallest one flagged by ``outlier_clusters``;
* ``shortcut``: m marked maps (43–66 % of their mass on a corner marker) among N → a cluster that is
  exactly the marked maps, flagged by ``outlier_clusters``.

Rules (k₀ = round(√N) between 3 and 10, the module's default before this sweep):

    sqrt        k₀ (CoRelAy's SparseKNN with the self-tuning weights of core/patterns.py)
    half        round(√N / 2) between 3 and 10
    log         round(ln N) between 3 and 10 (von Luxburg 2007, 8.1: k of the order log N)
    two-k       the clusterings of k₀ and of `half`'s k; the one whose eigengap (log ratio) is larger
    fixed3      k = 3
    two-k3      as two-k, with k = 3 as the second graph
    carve-h     k₀'s clustering, every flagged cluster of `half`'s clustering carved out of it as its own
    carve-3     the same with k = 3
    module      core/patterns.py's spray as it now is (since this sweep: two-k)

Two more were tried once and dropped (20 draws; they needed a copy of core/patterns.py's affinity with
extra knobs): σ_i from the 3rd neighbour instead of the k-th ("sigma3": no better than two-k, 4 of 34
in 5 of 20) and the mutual k₀-NN graph ("mutual": ONE strategy of 40 maps one cluster in 6 of 20).

Not a test. The runtime is printed at the end (about 70 s on 2 shared cores at 20 draws, all rules).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import patterns_factory  # noqa: E402

from gradcam_desktop.core import patterns  # noqa: E402


# -------------------------------------------------------------------------------------------- the rules
@dataclass
class Outcome:
    labels: np.ndarray
    count: int
    outliers: frozenset[int]
    gap: float  # the log-ratio jump of the eigengap's choice (0 for one cluster without a jump)


def sqrt_k(n: int) -> int:
    return min(patterns.NEIGHBOURS, max(patterns.MIN_NEIGHBOURS, round(math.sqrt(n))))


def half_k(n: int) -> int:
    return min(patterns.NEIGHBOURS, max(patterns.MIN_NEIGHBOURS, round(math.sqrt(n) / 2)))


def log_k(n: int) -> int:
    return min(patterns.NEIGHBOURS, max(patterns.MIN_NEIGHBOURS, round(math.log(n))))


def cluster(x: np.ndarray, adjacency, seed: int = 0) -> Outcome:
    """core/patterns.py's steps 3–5 and 7 on an affinity."""
    from sklearn.cluster import KMeans

    n = len(x)
    values, vectors = patterns.spectrum(adjacency, min(n, patterns.MAX_CLUSTERS + 1), seed=seed)
    count = patterns.eigengap(values, patterns.MAX_CLUSTERS)
    gap = patterns.eigengap_jump(values, count, patterns.MAX_CLUSTERS)
    if count <= 1:
        return Outcome(np.zeros(n, np.int64), 1, frozenset(), gap)
    rows = vectors[:, :count]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    labels = KMeans(n_clusters=count, n_init=patterns.KMEANS_INIT, random_state=seed).fit_predict(rows)
    labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
    return Outcome(labels, int(labels.max()) + 1, patterns.outlier_clusters(x, labels), gap)


def with_k(choose: Callable[[int], int]) -> Callable[[np.ndarray], Outcome]:
    return lambda x: cluster(x, patterns.affinity(x, choose(len(x))))


def two_k(x: np.ndarray) -> Outcome:
    first = with_k(sqrt_k)(x)
    if half_k(len(x)) == sqrt_k(len(x)):
        return first
    second = with_k(half_k)(x)
    return second if second.gap > first.gap else first


def two_k3(x: np.ndarray) -> Outcome:
    first = with_k(sqrt_k)(x)
    if sqrt_k(len(x)) == 3:
        return first
    second = with_k(lambda n: 3)(x)
    return second if second.gap > first.gap else first


def carve(small: Callable[[int], int]) -> Callable[[np.ndarray], Outcome]:
    """k₀'s clustering, with every flagged cluster of the clustering at k = ``small(N)`` carved out of it."""

    def rule(x: np.ndarray) -> Outcome:
        base = with_k(sqrt_k)(x)
        if small(len(x)) == sqrt_k(len(x)):
            return base
        fine = with_k(small)(x)
        labels = base.labels.copy()
        for c in sorted(fine.outliers):
            members = fine.labels == c
            labels[members] = labels.max() + 1
        labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
        count = int(labels.max()) + 1
        if count == base.count:
            return base
        return Outcome(labels, count, patterns.outlier_clusters(x, labels), base.gap)

    return rule


def current(x: np.ndarray) -> Outcome:
    """core/patterns.py as it is (whatever its default k now is)."""
    result = patterns.spray(x, seed=0, view=False)
    gap = patterns.eigengap_jump(result.eigenvalues, result.count, patterns.MAX_CLUSTERS)
    return Outcome(result.labels, result.count, result.outlier_clusters, gap)


RULES: dict[str, Callable[[np.ndarray], Outcome]] = {
    "sqrt": with_k(sqrt_k),
    "half": with_k(half_k),
    "log": with_k(log_k),
    "two-k": two_k,
    "fixed3": with_k(lambda n: 3),
    "two-k3": two_k3,
    "carve-h": carve(half_k),
    "carve-3": carve(lambda n: 3),
    "module": current,
}


# ------------------------------------------------------------------------------------------- scenarios
def one_cluster(outcome: Outcome, _truth) -> bool:
    return outcome.count == 1


def planted_clusters(outcome: Outcome, groups: np.ndarray) -> bool:
    from sklearn.metrics import adjusted_rand_score

    return outcome.count == int(groups.max()) + 1 and adjusted_rand_score(groups, outcome.labels) == 1.0


def planted_found(outcome: Outcome, groups: np.ndarray) -> bool:
    smallest = int(np.argmin(np.bincount(groups)))
    return planted_clusters(outcome, groups) and int(outcome.labels[groups == smallest][0]) in outcome.outliers


def marked_found(outcome: Outcome, marked: np.ndarray) -> bool:
    label = int(np.bincount(outcome.labels[marked]).argmax())
    return bool(np.array_equal(outcome.labels == label, marked)) and label in outcome.outliers


@dataclass
class Scenario:
    name: str
    kind: str  # "no false alarm", "planted", "small group"
    draw: Callable[[int], tuple[list[np.ndarray], object]]
    success: Callable[[Outcome, object], bool]


def scenarios() -> list[Scenario]:
    out = []
    for n in (20, 40, 60, 200):
        out.append(Scenario(f"one strategy N={n}", "no false alarm",
                            lambda s, n=n: (patterns_factory.strategies(s, (n,), centres=((16.0, 16.0),),
                                                                        widths=(3.0,), jitter=1.0)[0], None),
                            one_cluster))
    for n in (30, 60):
        out.append(Scenario(f"wide jitter N={n}", "no false alarm",
                            lambda s, n=n: (patterns_factory.wide_strategy(s, n), None), one_cluster))
    for counts in ((20, 15, 3), (10, 7, 2), (40, 30, 5)):
        name = "planted " + "+".join(map(str, counts))
        out.append(Scenario(name + " clusters", "planted",
                            lambda s, c=counts: patterns_factory.strategies(s, c), planted_clusters))
        out.append(Scenario(name + " +flagged", "planted",
                            lambda s, c=counts: patterns_factory.strategies(s, c), planted_found))
    for marked, n in ((4, 34), (3, 40), (5, 60), (6, 36), (7, 42), (10, 200), (20, 400)):
        out.append(Scenario(f"shortcut {marked} of {n}", "small group",
                            lambda s, m=marked, n=n: patterns_factory.shortcut_maps(s, n - m, m), marked_found))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--rules", default="all")
    parser.add_argument("--scenarios", default="all", help="comma-separated substrings of scenario names")
    args = parser.parse_args(argv)
    rules = RULES if args.rules == "all" else {name: RULES[name] for name in args.rules.split(",")}
    chosen = [s for s in scenarios()
              if args.scenarios == "all" or any(part in s.name for part in args.scenarios.split(","))]
    started = time.perf_counter()
    width = max(len(s.name) for s in chosen) + 2
    print(f"{'scenario':<{width}}" + "".join(f"{name:>9}" for name in rules) + "   (successes of "
          f"{args.draws} draws; k₀ = round(√N) in [3, 10])")
    for scenario in chosen:
        wins = dict.fromkeys(rules, 0)
        for draw in range(args.draws):
            maps, truth = scenario.draw(draw)
            x = patterns.prepare(maps)
            for name, rule in rules.items():
                wins[name] += bool(scenario.success(rule(x), truth))
        print(f"{scenario.name:<{width}}" + "".join(f"{wins[name]:>6}/{args.draws:<2}" for name in rules),
              flush=True)
    print(f"{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
