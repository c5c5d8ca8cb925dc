"""Choosing β/λ on validation prompts, and the weight grids of a sweep, against brute-force references."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from brute_force import simplex_compositions, union_volume
from pipelines.sweep.selection import normalisation, reward_matrix, select_candidates
from pipelines.sweep.weights import one_hot, simplex_grid

REWARDS = ["helpful", "short", "kl"]
DIRECTIONS = {"helpful": True, "short": True, "kl": False}  # kl: lower is better


RULE = ("largest validation hypervolume of the reward front (reference: worst observed value of each reward among "
        "this variant's candidates; rewards scaled by their observed range)")  # quoted by the report


def point(variant, candidate, values, stderr=0.1):
    return {"variant": variant, "candidate": candidate,
            "objectives": {r: {"mean": v, "stderr": stderr * (i + 1), "higher_is_better": DIRECTIONS[r]}
                           for i, (r, v) in enumerate(zip(REWARDS, values))}}


def random_results(seed: int, variants=("lines", "uniform"), candidates=("beta=0.5", "beta=1", "beta=0.25"),
                   weights=4) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [point(v, c, rng.normal(size=3).round(2).tolist()) for v in variants for c in candidates
            for _ in range(weights)]


def reference_hypervolumes(results, rewards) -> dict[str, dict[str, float]]:
    """Per variant and candidate: the volume of the candidate's front in the variant's box, where every reward is
    mapped to [0, 1] between its worst and best value over all the variant's candidates (maximised)."""
    out: dict[str, dict[str, float]] = {}
    for variant in dict.fromkeys(r["variant"] for r in results):
        points = [r for r in results if r["variant"] == variant]
        signs = [1.0 if points[0]["objectives"][n]["higher_is_better"] else -1.0 for n in rewards]
        values = [[s * p["objectives"][n]["mean"] for s, n in zip(signs, rewards)] for p in points]
        low = [min(v[k] for v in values) for k in range(len(rewards))]
        high = [max(v[k] for v in values) for k in range(len(rewards))]
        unit = [[(v[k] - low[k]) / ((high[k] - low[k]) or 1.0) for k in range(len(rewards))] for v in values]
        out[variant] = {}
        for candidate in dict.fromkeys(p["candidate"] for p in points):
            front = [u for u, p in zip(unit, points) if p["candidate"] == candidate]
            out[variant][candidate] = union_volume(front, [0.0] * len(rewards))
    return out


def test_reward_matrix_reads_the_named_field_in_reward_order():
    points = [point("v", "c", [1.0, 2.0, 3.0]), point("v", "c", [4.0, 5.0, 6.0])]
    assert reward_matrix(points, ["kl", "helpful"]).tolist() == [[3.0, 1.0], [6.0, 4.0]]
    assert reward_matrix(points, ["short"], "stderr").tolist() == [[pytest.approx(0.2)], [pytest.approx(0.2)]]
    integers = [{"objectives": {"helpful": {"mean": 1}}}, {"objectives": {"helpful": {"mean": 2}}}]
    assert reward_matrix(integers, ["helpful"]).dtype == np.float64  # counts are scored as floats


def test_normalisation_is_the_worst_value_and_the_range_in_maximised_units():
    points = [point("v", "c", [1.0, 7.0, 0.5]), point("v", "c", [3.0, 7.0, 2.5]), point("v", "c", [2.0, 7.0, 1.0])]
    reference, scale, directions = normalisation(points, REWARDS)
    assert directions == [True, True, False]
    # kl is negated: worst = −2.5, range 2; `short` has no range: scale 1, so the reference is its value.
    assert scale.tolist() == [2.0, 1.0, 2.0]
    assert (reference * scale).tolist() == pytest.approx([1.0, 7.0, -2.5])
    # One point: no range anywhere, so the box is the point itself with unit scales.
    reference, scale, directions = normalisation(points[:1], REWARDS)
    assert scale.tolist() == [1.0, 1.0, 1.0] and reference.tolist() == [1.0, 7.0, -0.5] and directions[2] is False


@pytest.mark.parametrize("seed", range(6))
def test_validation_hypervolumes_equal_a_brute_force_count(seed):
    results = random_results(seed)
    selection = select_candidates(results, REWARDS)
    expected = reference_hypervolumes(results, REWARDS)
    assert set(selection) == set(expected)
    for variant, chosen in selection.items():
        assert chosen["hypervolumes"] == pytest.approx(expected[variant], abs=1e-12)
        ranked = sorted(expected[variant].items(), key=lambda kv: (-kv[1], kv[0]))
        assert chosen["chosen"] == ranked[0][0]
        assert chosen["margin"] == pytest.approx(ranked[0][1] - ranked[1][1], abs=1e-12)
        assert chosen["margin"] >= 0 and chosen["rule"] == RULE


def test_the_candidate_whose_front_dominates_is_chosen_whatever_its_order():
    # Two rewards, both maximised; candidate "b" shifts every point of "a" up and right by 1.
    names = ["helpful", "short"]
    base = [[0.0, 3.0], [1.0, 2.0], [2.0, 0.0]]

    def results(order):
        rows = []
        for label in order:
            shift = 1.0 if label == "b" else 0.0
            rows += [{"variant": "lines", "candidate": label,
                      "objectives": {n: {"mean": v + shift, "higher_is_better": True} for n, v in zip(names, xy)}}
                     for xy in base]
        return rows

    for order in (["a", "b"], ["b", "a"]):
        chosen = select_candidates(results(order), names)["lines"]
        assert chosen["chosen"] == "b"
        # Box: helpful 0…3, short 0…4. a's staircase: (0,3),(1,2),(2,0) → 2/3·... counted exactly below.
        a = union_volume([[x / 3, y / 4] for x, y in base], [0, 0])
        b = union_volume([[(x + 1) / 3, (y + 1) / 4] for x, y in base], [0, 0])
        assert chosen["hypervolumes"] == pytest.approx({"a": a, "b": b}) and chosen["margin"] == pytest.approx(b - a)


def test_lower_is_better_rewards_are_flipped_before_choosing():
    names = ["helpful", "kl"]
    # "far" (sorted first, so it would win a tie) has the larger KL: read as higher-is-better it would dominate.
    rows = [{"variant": "v", "candidate": c, "objectives": {"helpful": {"mean": h, "higher_is_better": True},
                                                            "kl": {"mean": kl, "higher_is_better": False}}}
            for c, h, kl in [("near", 1.0, 0.1), ("far", 0.5, 0.9)]]
    chosen = select_candidates(rows, names)["v"]
    assert chosen["chosen"] == "near" and chosen["hypervolumes"] == {"near": 1.0, "far": 0.0}


def test_ties_go_to_the_first_label_in_sort_order_and_a_single_candidate_has_no_margin():
    tie = [point("v", label, [1.0, 1.0, 1.0]) for label in ("beta=1", "beta=0.5")]
    tie += [point("v", label, [0.0, 0.0, 2.0]) for label in ("beta=1", "beta=0.5")]
    chosen = select_candidates(tie, REWARDS)["v"]
    assert chosen["chosen"] == "beta=0.5" and chosen["margin"] == 0.0
    alone = select_candidates([point("v", "only", [1.0, 2.0, 3.0]), point("v", "only", [2.0, 1.0, 3.0])], REWARDS)
    assert alone["v"]["chosen"] == "only" and alone["v"]["margin"] == 0.0


def test_each_variant_is_normalised_in_its_own_box():
    # The same shapes at very different scales: each variant's hypervolumes are fractions of its own box.
    small = random_results(3, variants=("lines",))
    large = [{**r, "variant": "uniform", "objectives": {n: {**o, "mean": 100 * o["mean"] + 7}
                                                        for n, o in r["objectives"].items()}} for r in small]
    selection = select_candidates(small + large, REWARDS)
    assert selection["uniform"]["hypervolumes"] == pytest.approx(selection["lines"]["hypervolumes"], abs=1e-12)


# -- weight grids ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_rewards,step", [(3, 0.25), (3, 0.5), (3, 0.1), (4, 0.25), (4, 1.0), (5, 0.5), (2, 0.2),
                                             (3, 1 / 3)])
def test_grids_for_several_rewards_are_every_composition_exactly_once(n_rewards, step):
    grid = simplex_grid(n_rewards, step=step)
    divisions = round(1 / step)
    expected = simplex_compositions(n_rewards, divisions)
    assert len(grid) == len(set(grid)) == len(expected) == math.comb(divisions + n_rewards - 1, n_rewards - 1)
    assert {tuple(Fraction(w).limit_denominator(1000) for w in weights) for weights in grid} == expected
    assert all(len(w) == n_rewards and abs(sum(w) - 1.0) < 1e-9 for w in grid)
    assert all(w == tuple(round(x, 10) for x in w) for w in grid)  # stable keys and labels
    assert grid == sorted(grid, reverse=True) and grid[0] == one_hot(n_rewards, 0)


def test_two_rewards_by_points_run_from_the_first_reward_to_the_second():
    assert simplex_grid(2, points=5) == [(1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0)]
    assert simplex_grid(2, points=2) == [(1.0, 0.0), (0.0, 1.0)]
    assert simplex_grid(3, points=3) == sorted(
        [tuple(float(x) for x in w) for w in simplex_compositions(3, 2)], reverse=True)
    assert simplex_grid(1) == [(1.0,)] and simplex_grid(1, points=9) == [(1.0,)]
    # A step wins over points when both are given.
    assert simplex_grid(2, points=3, step=0.25) == simplex_grid(2, points=5)


@pytest.mark.parametrize("kwargs,message", [
    ({"n_rewards": 0, "points": 3}, "^need at least one reward$"),
    ({"n_rewards": 2}, r"^give `points` ≥ 2 \(two rewards\) or a grid `step`$"),
    ({"n_rewards": 2, "points": 1}, "give `points`"),
    ({"n_rewards": 3, "step": 0.3}, r"^sweep.step 0.3 does not divide 1 into equal parts; use e.g. 0.25, 0.2 or 0.1$"),
    ({"n_rewards": 3, "step": 0.4}, "does not divide 1"),
    ({"n_rewards": 3, "step": 2.0}, "does not divide 1"),
])
def test_grids_that_cannot_be_built_say_why(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simplex_grid(**kwargs)


def test_one_hot():
    assert one_hot(3, 1) == (0.0, 1.0, 0.0) and one_hot(1, 0) == (1.0,)
    assert [one_hot(4, i).index(1.0) for i in range(4)] == list(range(4))
    assert all(sum(one_hot(4, i)) == 1.0 for i in range(4))


def test_brute_force_volume_agrees_with_hand_counts():
    """The reference itself, on cases counted by hand."""
    assert union_volume([[1, 3], [2, 2], [3, 1]], [0, 0]) == 6.0
    assert union_volume([[1, 1, 1]], [0, 0, 0]) == 1.0
    assert union_volume([[2, 1, 1], [1, 2, 1]], [0, 0, 0]) == 3.0
    assert union_volume([[-1, 5]], [0, 0]) == 0.0
    assert list(itertools.islice(sorted(simplex_compositions(2, 2)), 3)) == [
        (0, 1), (Fraction(1, 2), Fraction(1, 2)), (1, 0)]
