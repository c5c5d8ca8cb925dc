"""Hypervolume's reference point and scale are fixed by θ0 and the single policies: removing a variant (or a control)
leaves every other comparison's numbers — estimate and bootstrap interval — exactly as they were."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipelines.report.data import anchor_points, hypervolume_analysis, load_run, shown_points
from pipelines.sweep.selection import normalisation
from tests.report_fixtures import write_tiny_run


def without(data, front: str):
    return replace(data, points=[p for p in data.points
                                 if p["variant"] != front and not (p["variant"] == "matched" and f"[{front}]" in
                                                                   p["front"])])


def numbers(analysis: dict, pairs) -> dict:
    return {pair: (analysis["diff"][pair].estimate, analysis["diff"][pair].low, analysis["diff"][pair].high)
            for pair in pairs}


@pytest.mark.parametrize("dropped", ["uniform", "soup", "lines"])
def test_removing_a_variant_changes_no_other_comparison(tmp_path, dropped):
    data = load_run(write_tiny_run(tmp_path, seed=3))
    full = hypervolume_analysis(data)
    reduced_data = without(data, dropped)
    reduced = hypervolume_analysis(reduced_data)
    kept = [pair for pair in reduced["diff"]]
    assert kept and all(dropped not in pair for pair in kept)
    assert numbers(reduced, kept) == numbers(full, kept)  # exactly: same box, same prompt resamples
    assert np.array_equal(full["reference"], reduced["reference"]) and np.array_equal(full["scale"],
                                                                                      reduced["scale"])


def test_the_box_is_theta0_and_the_policies(tmp_path):
    data = load_run(write_tiny_run(tmp_path, seed=3))
    anchors = anchor_points(data)
    assert sorted(p["variant"] for p in anchors) == ["base", "policy", "policy"]
    values = np.array([[p["objectives"][r]["mean"] for r in data.rewards] for p in anchors])
    analysis = hypervolume_analysis(data)
    assert analysis["reference"] == pytest.approx(values.min(axis=0))
    assert analysis["scale"] == pytest.approx(values.max(axis=0) - values.min(axis=0))


def test_a_box_drawn_around_every_front_would_move_other_comparisons(tmp_path):
    """The check has teeth: the former rule (the box around every point shown) moves lines − soup when the uniform
    control is dropped, for at least one of these draws."""
    moved = False
    for seed in range(5):
        data = load_run(write_tiny_run(tmp_path / str(seed), seed=seed))
        reduced = without(data, "uniform")
        old = lambda d: hypervolume_analysis(d, normalisation(shown_points(d), d.rewards))  # noqa: E731
        moved |= numbers(old(data), [("lines", "soup")]) != numbers(old(reduced), [("lines", "soup")])
    assert moved
