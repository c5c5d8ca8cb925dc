"""The summary convention, the significance rule, the paired bootstrap of hypervolumes and the study's pooling over
seeds, against loop-by-loop reimplementations in fp64 (the same random draws, replayed) and exact cases."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from brute_force import union_volume
from pipelines.pareto import Interval, bootstrap_hypervolumes
from pipelines.report.data import verdict
from pipelines.report.study import metric_difference
from pipelines.summary import compare, critical_value, direction, summarize


def percentile(values, q):
    """numpy's default ('linear') percentile, written out: the order statistic at rank q/100·(n−1), interpolated."""
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


# -- summary: the prompt is the unit --------------------------------------------------------------------------------

def test_summarize_equals_per_prompt_means_and_their_standard_error():
    values = [1.0, 3.0, 2.0, 10.0, 4.0, 6.0, 0.5]
    prompts = ["b", "a", "b", "c", "a", "c", "d"]
    summary = summarize(values, prompts)
    by_prompt = {p: [v for v, q in zip(values, prompts) if q == p] for p in dict.fromkeys(prompts)}
    means = [statistics.fmean(v) for v in by_prompt.values()]  # first appearance: b, a, c, d
    assert summary["per_prompt"] == pytest.approx(means, abs=1e-15) and list(by_prompt) == ["b", "a", "c", "d"]
    assert summary["mean"] == pytest.approx(statistics.fmean(values), abs=1e-15)  # over samples, not prompts
    assert summary["stderr"] == pytest.approx(statistics.stdev(means) / math.sqrt(4), abs=1e-15)
    assert (summary["n"], summary["n_prompts"]) == (7, 4)


def test_summarize_in_a_given_prompt_order_keeps_prompts_without_samples():
    summary = summarize([2.0, 4.0], ["x", "x"], prompt_order=["y", "x"])
    assert summary["per_prompt"] == [0.0, 3.0] and summary["n_prompts"] == 2 and summary["n"] == 2
    assert summary["stderr"] == pytest.approx(statistics.stdev([0.0, 3.0]) / math.sqrt(2))
    last_missing = summarize([2.0, 4.0, 1.0], ["x", "x", "z"], prompt_order=["x", "z", "y"])
    assert last_missing["per_prompt"] == [3.0, 1.0, 0.0] and last_missing["n_prompts"] == 3


def test_summarize_with_one_prompt_or_none_has_no_standard_error():
    one = summarize([1.0, 2.0, 6.0], ["p", "p", "p"])
    assert one["mean"] == 3.0 and one["per_prompt"] == [3.0] and math.isnan(one["stderr"])
    empty = summarize([], [])
    assert math.isnan(empty["mean"]) and math.isnan(empty["stderr"]) and empty["n"] == empty["n_prompts"] == 0


@pytest.mark.parametrize("low,high,expected", [(0.1, 2.0, 1), (-2.0, -0.1, -1), (-1.0, 1.0, 0), (0.0, 1.0, 0),
                                               (-1.0, 0.0, 0), (0.0, 0.0, 0)])
def test_direction_needs_the_interval_to_exclude_zero(low, high, expected):
    assert direction(low, high) == expected


def test_critical_values_are_normal_quantiles():
    assert critical_value() == pytest.approx(1.959963984540054, abs=1e-12)
    assert critical_value(0.90) == pytest.approx(1.6448536269514722, abs=1e-12)
    assert critical_value(0.99) == pytest.approx(2.5758293035489004, abs=1e-12)


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_compare_is_the_normal_interval_of_paired_per_prompt_differences(level):
    rng = np.random.default_rng(4)
    prompts = [f"p{i}" for i in range(12) for _ in range(3)]
    a_values, b_values = rng.normal(1.0, 1.0, 36).tolist(), rng.normal(0.2, 1.0, 36).tolist()
    a, b = summarize(a_values, prompts), summarize(b_values, prompts)
    result = compare(a, b, level)
    paired = [x - y for x, y in zip(a["per_prompt"], b["per_prompt"])]
    stderr = statistics.stdev(paired) / math.sqrt(len(paired))
    half = statistics.NormalDist().inv_cdf(0.5 + level / 2) * stderr
    difference = statistics.fmean(a_values) - statistics.fmean(b_values)
    assert result["difference"] == pytest.approx(difference, abs=1e-14)
    assert result["stderr"] == pytest.approx(stderr, abs=1e-14)
    assert (result["low"], result["high"]) == pytest.approx((difference - half, difference + half), abs=1e-14)
    assert result["level"] == level
    assert result["significant"] == (difference - half > 0 or difference + half < 0)


def test_compare_calls_significance_only_beyond_noise():
    same = summarize([1.0, 2.0, 3.0, 4.0], ["a", "b", "c", "d"])
    shifted = summarize([1.5, 2.5, 3.5, 4.4], ["a", "b", "c", "d"])
    assert compare(shifted, same)["significant"]  # every prompt better by about 0.5: stderr tiny
    noisy = summarize([3.0, 0.0, 5.0, 2.2], ["a", "b", "c", "d"])
    assert not compare(noisy, same)["significant"]
    two = compare(summarize([2.0, 5.0], ["a", "b"]), summarize([1.0, 3.0], ["a", "b"]))
    assert two["difference"] == 1.5 and two["stderr"] == pytest.approx(statistics.stdev([1.0, 2.0]) / math.sqrt(2))
    one = compare(summarize([2.0], ["a"]), summarize([1.0], ["a"]))
    assert one["difference"] == 1.0 and math.isnan(one["stderr"]) and not one["significant"]
    with pytest.raises(ValueError, match=r"same prompts \(2 vs 3 per-prompt means\)"):
        compare(summarize([1.0, 2.0], ["a", "b"]), summarize([1.0, 2.0, 3.0], ["a", "b", "c"]))


# -- paired bootstrap of hypervolumes -----------------------------------------------------------------------------

def replayed_bootstrap(per_prompt, reference, scale, n_boot, seed, level):
    """bootstrap_hypervolumes written as loops: one prompt resample per replicate shared by every variant."""
    rng = np.random.default_rng(seed)
    n_prompts = next(iter(per_prompt.values())).shape[1]

    def volume(values, idx):
        means = [[sum(values[p, i, k] for i in idx) / len(idx) / scale[k] for k in range(values.shape[2])]
                 for p in range(values.shape[0])]
        return union_volume(means, reference)

    full = {n: volume(v, list(range(n_prompts))) for n, v in per_prompt.items()}
    draws = {n: [] for n in per_prompt}
    for _ in range(n_boot):
        idx = list(rng.integers(0, n_prompts, n_prompts))
        for n, v in per_prompt.items():
            draws[n].append(volume(v, idx))
    tail = (1 - level) / 2 * 100
    return full, draws, tail


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_bootstrap_hypervolumes_equal_a_replayed_brute_force(level):
    rng = np.random.default_rng(7)
    per_prompt = {name: rng.normal(shift, 1.0, size=(4, 6, 2)) for name, shift in
                  [("soup", 0.0), ("lines", 0.3), ("uniform", 0.1)]}
    reference, scale = np.array([-1.5, -1.2]), np.array([2.0, 0.5])
    result = bootstrap_hypervolumes(per_prompt, reference, scale, n_boot=40, seed=3, level=level)
    full, draws, tail = replayed_bootstrap(per_prompt, reference, scale, 40, 3, level)
    for name in per_prompt:
        assert result["draws"][name] == pytest.approx(draws[name], abs=1e-12)
        hv = result["hv"][name]
        assert hv.estimate == pytest.approx(full[name], abs=1e-12)
        assert (hv.low, hv.high) == pytest.approx((percentile(draws[name], tail), percentile(draws[name], 100 - tail)))
    assert set(result["diff"]) == {(a, b) for a in per_prompt for b in per_prompt if a != b}
    for (a, b), d in result["diff"].items():
        paired = [x - y for x, y in zip(draws[a], draws[b])]
        assert d.estimate == pytest.approx(full[a] - full[b], abs=1e-12)
        assert (d.low, d.high) == pytest.approx((percentile(paired, tail), percentile(paired, 100 - tail)), abs=1e-12)


def test_bootstrap_defaults_are_1000_replicates_from_seed_0_at_95_percent():
    per_prompt = {name: np.random.default_rng(seed).normal(size=(2, 5, 2)) for seed, name in enumerate("ab")}
    reference, scale = np.array([-3.0, -3.0]), np.ones(2)
    default = bootstrap_hypervolumes(per_prompt, reference, scale)
    explicit = bootstrap_hypervolumes(per_prompt, reference, scale, n_boot=1000, seed=0, level=0.95)
    assert len(default["draws"]["a"]) == 1000
    assert default["draws"]["a"].tolist() == explicit["draws"]["a"].tolist() and default["hv"] == explicit["hv"]


def test_bootstrap_refuses_variants_on_different_prompts():
    with pytest.raises(ValueError, match="^every variant must be scored on the same prompts for a paired bootstrap$"):
        bootstrap_hypervolumes({"a": np.zeros((2, 3, 2)), "b": np.zeros((2, 4, 2))}, np.zeros(2), np.ones(2), n_boot=2)


def test_interval_excludes_zero_only_strictly():
    assert Interval(1.0, 0.1, 2.0).excludes_zero() and Interval(-1.0, -2.0, -0.1).excludes_zero()
    assert not Interval(0.5, 0.0, 1.0).excludes_zero() and not Interval(-0.5, -1.0, 0.0).excludes_zero()


# -- the study's per-seed closeness differences ------------------------------------------------------------------

class FrontsOnly:
    """What metric_difference reads of a run: its fronts."""

    def __init__(self, fronts):
        self._fronts = fronts

    def fronts(self):
        return self._fronts


def front_point(weights, mean):
    return {"weights": list(weights), "objectives": {"kl": {"mean": mean}}}


def test_metric_difference_pairs_the_shared_weights():
    lines = [front_point((1.0, 0.0), 2.0), front_point((0.5, 0.5), 3.0),
             front_point((0.0, 1.0), 9.0)]  # no partner on the soup front: left out
    soup = [front_point((0.5, 0.5), 1.0), front_point((1.0, 0.0), 1.5)]
    estimate = metric_difference(FrontsOnly({"lines": lines, "soup": soup}), "lines", "soup", "kl")
    assert estimate == pytest.approx(((2.0 - 1.5) + (3.0 - 1.0)) / 2, abs=1e-15)


# -- verdict words follow the interval ---------------------------------------------------------------------------

@pytest.mark.parametrize("low,high,word", [(0.01, 0.03, "**lines beat soup**"),
                                           (-0.03, -0.01, "**lines lost to soup**"),
                                           (-0.01, 0.02, "**no clear difference between lines and soup**"),
                                           (0.0, 0.02, "**no clear difference between lines and soup**")])
def test_run_verdict_follows_the_interval(low, high, word):
    analysis = {"diff": {("lines", "soup"): Interval((low + high) / 2, low, high)}, "level": 0.9}
    text = verdict(analysis, "lines", "soup")
    assert text.startswith(word + ": hypervolume difference ")
    assert f"{(low + high) / 2:+.4f} (90% CI {low:+.4f} … {high:+.4f})" in text
