"""Brute-force references for the sweep's maths, written for clarity and not speed: union-of-boxes volume by
coordinate compression, and simplex grids enumerated with exact fractions."""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np


def union_volume(points, reference) -> float:
    """Volume dominated by `points` beyond `reference` (maximisation): every cell of the grid spanned by the
    points' coordinates is counted when some point dominates its upper corner."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=np.float64)
    axes = [sorted({reference[k], *(p[k] for p in points if p[k] > reference[k])}) for k in range(len(reference))]
    volume = 0.0
    for cell in itertools.product(*[range(len(axis) - 1) for axis in axes]):
        upper = np.array([axes[k][i + 1] for k, i in enumerate(cell)])
        if any(np.all(p >= upper) for p in points):
            volume += float(np.prod([axes[k][i + 1] - axes[k][i] for k, i in enumerate(cell)]))
    return volume


def simplex_compositions(n_rewards: int, divisions: int) -> set[tuple[Fraction, ...]]:
    """Every weight vector of multiples of 1/divisions that sums to 1, as exact fractions."""
    steps = [Fraction(i, divisions) for i in range(divisions + 1)]
    return {w for w in itertools.product(steps, repeat=n_rewards) if sum(w) == 1}
