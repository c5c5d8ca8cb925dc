"""Pareto analysis of reward trade-offs: pure functions on arrays, every objective maximised.

Callers flip lower-is-better metrics (KL, perplexity) with `orient` before using the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def orient(values: np.ndarray, higher_is_better: list[bool]) -> np.ndarray:
    """Negate the columns where lower is better, so that every column is maximised."""
    signs = np.where(np.asarray(higher_is_better), 1.0, -1.0)
    return np.asarray(values, dtype=np.float64) * signs


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """a is at least as good as b everywhere and strictly better somewhere."""
    return bool(np.all(a >= b) and np.any(a > b))


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of `points` (n, k), in input order."""
    points = np.asarray(points, dtype=np.float64)
    keep = [i for i in range(len(points))
            if not any(dominates(points[j], points[i]) for j in range(len(points)) if j != i)]
    return np.asarray(keep, dtype=int)


def count_dominated(points: np.ndarray, by: np.ndarray) -> int:
    """How many rows of `points` are dominated by at least one row of `by`."""
    return sum(any(dominates(b, p) for b in np.asarray(by)) for p in np.asarray(points))


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Volume of the region dominated by `points` and dominating `reference` (maximisation).

    Exact, by slicing along the last objective (fine for the tens of points and few rewards of a sweep).
    Points that do not strictly dominate the reference in every objective contribute nothing.
    """
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if points.size == 0:
        return 0.0
    points = points[np.all(points > reference, axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(points[:, 0].max() - reference[0])
    # Sweep the last objective from the top: between consecutive levels, the dominated slice is the
    # (k−1)-dimensional hypervolume of the points at or above that level.
    order = np.argsort(-points[:, -1])
    points = points[order]
    levels = np.append(points[:, -1], reference[-1])
    volume = 0.0
    for i in range(len(points)):
        height = levels[i] - levels[i + 1]
        if height > 0:
            volume += height * hypervolume(points[: i + 1, :-1], reference[:-1])
    return float(volume)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def bootstrap_hypervolumes(per_prompt: dict[str, np.ndarray], reference: np.ndarray, scale: np.ndarray,
                           n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Paired bootstrap over prompts of every variant's hypervolume and of the differences between variants.

    per_prompt[variant] has shape (points, prompts, k): each point's per-prompt mean of every objective
    (already oriented for maximisation). One resample of prompt indices is shared by all variants, so the
    differences are paired. Objectives are divided by `scale` (e.g. the observed range) before the volume, and
    `reference` is in the same (scaled) units and held fixed across resamples.
    Returns {"hv": {variant: Interval}, "diff": {(a, b): Interval of hv_a − hv_b}, "draws": {variant: the n_boot
    resampled hypervolumes}} (the draws let a study pool seeds).
    """
    names = list(per_prompt)
    n_prompts = next(iter(per_prompt.values())).shape[1]
    if any(v.shape[1] != n_prompts for v in per_prompt.values()):
        raise ValueError("every variant must be scored on the same prompts for a paired bootstrap")
    rng = np.random.default_rng(seed)

    def hv_of(values: np.ndarray, idx) -> float:
        means = values[:, idx, :].mean(axis=1) / scale
        return hypervolume(means, reference)

    full = {n: hv_of(per_prompt[n], slice(None)) for n in names}
    samples = {n: np.empty(n_boot) for n in names}
    for b in range(n_boot):
        idx = rng.integers(0, n_prompts, n_prompts)
        for n in names:
            samples[n][b] = hv_of(per_prompt[n], idx)
    tail = (1 - level) / 2 * 100

    def interval(estimate, draws):
        low, high = np.percentile(draws, [tail, 100 - tail])
        return Interval(float(estimate), float(low), float(high))

    hv = {n: interval(full[n], samples[n]) for n in names}
    diff = {(a, b): interval(full[a] - full[b], samples[a] - samples[b]) for a in names for b in names if a != b}
    return {"hv": hv, "diff": diff, "draws": samples}
