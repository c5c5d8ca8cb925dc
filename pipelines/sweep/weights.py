"""Interpolation weights on the simplex."""
from __future__ import annotations

import itertools
import math


# A front is traced by tens of points; a grid far larger is a typo (points: 1e6) that would run for ever.
MAX_GRID_POINTS = 10_000


def simplex_grid(n_rewards: int, points: int | None = None, step: float | None = None) -> list[tuple[float, ...]]:
    """Evenly spaced weights summing to 1.

    Two rewards: `points` values from (1, 0) to (0, 1). N ≥ 3: every combination of multiples of `step`
    (e.g. 0.25) that sums to 1. Rounded to 10 decimals so that keys and labels are stable.
    """
    if n_rewards < 1:
        raise ValueError("need at least one reward")
    if n_rewards == 1:
        return [(1.0,)]
    if step is None:
        if points is None or points < 2:
            raise ValueError("give `points` ≥ 2 (two rewards) or a grid `step`")
        step = 1.0 / (points - 1)
    divisions = round(1.0 / step)
    if divisions < 1 or abs(divisions * step - 1.0) > 1e-9:
        raise ValueError(f"sweep.step {step} does not divide 1 into equal parts; use e.g. 0.25, 0.2 or 0.1")
    size = math.comb(divisions + n_rewards - 1, n_rewards - 1)  # multisets of n parts summing to `divisions`
    if size > MAX_GRID_POINTS:
        raise ValueError(f"the weight grid would have {size if size < 10**12 else 'over 10^12'} points, more than "
                         f"{MAX_GRID_POINTS} (each is a merge and a generation); lower sweep.points or raise the step")
    grid = []
    for combo in itertools.product(range(divisions + 1), repeat=n_rewards - 1):
        if sum(combo) <= divisions:
            counts = (divisions - sum(combo), *combo)
            grid.append(tuple(round(c / divisions, 10) for c in counts))
    return sorted(grid, reverse=True)


def one_hot(n_rewards: int, index: int) -> tuple[float, ...]:
    return tuple(1.0 if i == index else 0.0 for i in range(n_rewards))
