"""Pareto and hypervolume math against hand-computed cases."""
import itertools

import numpy as np
import pytest

from pipelines.pareto import (bootstrap_hypervolumes, count_dominated, dominates, hypervolume, orient,
                              pareto_front)


def test_front_and_dominance():
    pts = np.array([[1, 5], [2, 4], [2, 2], [3, 1], [0, 0], [3, 1]])
    assert pareto_front(pts).tolist() == [0, 1, 3, 5]  # duplicates do not dominate each other
    assert dominates(np.array([2, 4]), np.array([2, 2])) and not dominates(np.array([2, 2]), np.array([2, 2]))
    assert count_dominated(np.array([[1, 1], [5, 5], [0, 4]]), by=pts) == 2


def test_orient_flips_lower_is_better():
    assert orient(np.array([[1.0, 2.0]]), [True, False]).tolist() == [[1.0, -2.0]]


def test_hypervolume_2d_by_hand():
    # Staircase of (1,3), (2,2), (3,1) over reference (0,0): 3 + 2 + 1 = 6 unit squares.
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1]]), np.array([0, 0])) == pytest.approx(6.0)
    # A dominated point adds nothing; a point not beyond the reference adds nothing.
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1], [1, 1], [-1, 9]]), np.array([0, 0])) == pytest.approx(6.0)
    assert hypervolume(np.array([[0.5, 0.5]]), np.array([0.25, 0.0])) == pytest.approx(0.125)
    assert hypervolume(np.empty((0, 2)), np.array([0, 0])) == 0.0


def test_hypervolume_against_a_brute_force_union_with_an_uneven_reference():
    """Three and four objectives, a reference point different in every coordinate (slices must keep theirs)."""
    from brute_force import union_volume

    rng = np.random.default_rng(3)
    for k, reference in [(3, np.array([0.5, -1.0, 0.25])), (4, np.array([-0.5, 0.1, 0.3, -0.2]))]:
        pts = rng.normal(0.5, 1.0, size=(6, k))
        assert hypervolume(pts, reference) == pytest.approx(union_volume(pts, reference), abs=1e-12)


def test_no_point_beyond_the_reference_has_no_volume_and_an_empty_front_indexes():
    assert hypervolume(np.array([[-1.0, 9.0], [2.0, -0.5]]), np.array([0.0, 0.0])) == 0.0
    empty = pareto_front(np.empty((0, 2)))
    assert empty.dtype.kind == "i" and np.empty((0, 2))[empty].shape == (0, 2)


def test_hypervolume_3d_against_monte_carlo_free_count():
    """Integer points: the volume equals the number of unit cells dominated, counted exhaustively."""
    rng = np.random.default_rng(0)
    pts = rng.integers(1, 6, size=(7, 3)).astype(float)
    cells = sum(any(np.all(p >= np.array(c) + 1) for p in pts) for c in itertools.product(range(5), repeat=3))
    assert hypervolume(pts, np.zeros(3)) == pytest.approx(cells)


def test_paired_bootstrap_intervals():
    rng = np.random.default_rng(1)
    prompts = 200
    base = rng.normal(0, 1, size=(3, prompts, 2))
    better = base + 0.5  # the same prompts, uniformly better: the paired difference must be clearly positive
    res = bootstrap_hypervolumes({"a": better, "b": base}, reference=np.array([-3.0, -3.0]), scale=np.ones(2),
                                 n_boot=200, seed=0)
    d = res["diff"][("a", "b")]
    assert d.low > 0 and d.excludes_zero()
    assert res["diff"][("b", "a")].high < 0
    hv = res["hv"]["a"]
    assert hv.low <= hv.estimate <= hv.high
    same = bootstrap_hypervolumes({"a": base, "b": base.copy()}, np.array([-3.0, -3.0]), np.ones(2), n_boot=50)
    assert same["diff"][("a", "b")].low == same["diff"][("a", "b")].high == 0.0
