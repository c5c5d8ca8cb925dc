"""The study's report: per-seed differences in one box fixed by the anchors, the inference over seeds checked against
scipy and a hand enumeration, the family from the config, and reward at matched KL on a case worked by hand."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import yaml
from scipy import stats

from pipelines.errors import PipelineError
from pipelines.report.data import anchor_points, hypervolume_analysis, load_run
from pipelines.report.matched_kl import matched_kl_difference, matched_kl_gains
from pipelines.report.study import build_study_report
from pipelines.sweep.selection import normalisation
from tests.report_fixtures import write_tiny_run

SEEDS = [0, 1, 2, 3, 4, 5]


def tiny_seeds(root, study=None):
    dirs = {s: write_tiny_run(root, seed=s, name=f"seed-{s}") for s in SEEDS}
    if study is not None:
        for d in dirs.values():
            config = yaml.safe_load((d / "config.yaml").read_text())
            (d / "config.yaml").write_text(yaml.safe_dump({**config, "study": study}))
    return dirs


def test_pooled_rows_are_the_t_interval_and_sign_flip_of_the_per_seed_differences(tmp_path):
    dirs = tiny_seeds(tmp_path)
    out = build_study_report(tmp_path / "study", dirs)
    pooled = json.loads((out / "pooled.json").read_text())
    runs = [load_run(dirs[s]) for s in SEEDS]
    box = normalisation([p for r in runs for p in anchor_points(r)], runs[0].rewards)
    rows = pooled["hypervolume"]
    assert {(r["a"], r["b"]) for r in rows} == {("lines", "soup"), ("lines", "matched[lines]"), ("lines", "uniform")}
    raw_p = []
    for row in rows:
        d = np.array([hypervolume_analysis(r, box)["diff"][(row["a"], row["b"])].estimate for r in runs])
        assert [row["per_seed"][str(s)] for s in SEEDS] == pytest.approx(d.tolist(), abs=1e-12)
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
        assert (row["mean"], row["low"], row["high"]) == pytest.approx((d.mean(), ci.low, ci.high), abs=1e-12)
        flips = [abs(np.dot(signs, d)) >= abs(d.sum()) - 1e-12 for signs in itertools.product((1, -1), repeat=6)]
        assert row["sign_flip_p"] == pytest.approx(np.mean(flips))
        raw_p.append(row["sign_flip_p"])
        assert row["in_family"] and row["verdict"] in {"a better", "b better", "equivalent", "not shown"}
    order = np.argsort(raw_p)  # Holm by hand: the k-th smallest times (m − k + 1), running maximum
    expected, running = {}, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (3 - k) * raw_p[i]))
        expected[i] = running
    assert [r["holm_p"] for r in rows] == pytest.approx([expected[i] for i in range(3)])
    md = (out / "report.md").read_text()
    for section in ("## Design", "## Fronts and controls", "## Verdicts", "## Reward at matched KL",
                    "## Closeness to θ0 (estimates, not verdicts)", "Minimum detectable effect", "Holm"):
        assert section in md
    assert "`matched[lines]`: norm-matched control of `lines`" in md and "`uniform`: tuned uniform control" in md


def test_the_family_comes_from_the_config(tmp_path):
    dirs = tiny_seeds(tmp_path, study={"family": [["lines", "soup"]], "equivalence_margin": 0.5})
    pooled = json.loads((build_study_report(tmp_path / "study", dirs) / "pooled.json").read_text())
    judged = {(r["a"], r["b"]): r for r in pooled["hypervolume"]}
    assert judged[("lines", "soup")]["in_family"] and judged[("lines", "soup")]["holm_p"] == \
        judged[("lines", "soup")]["sign_flip_p"]  # a family of one: Holm changes nothing
    assert judged[("lines", "uniform")]["verdict"] is None and not judged[("lines", "uniform")]["in_family"]
    bad = tiny_seeds(tmp_path / "bad", study={"family": [["lines", "nothing"]]})
    with pytest.raises(PipelineError, match=r"study.family names \['lines', 'nothing'\]"):
        build_study_report(tmp_path / "bad" / "study", bad)


class Fake:
    def __init__(self, fronts):
        self._fronts = fronts
        self.rewards, self.metrics = ["r1", "r2"], ["kl"]
        self.config = {"metrics": [{"name": "kl", "type": "kl"}],
                       "sweep": {"variants": [{"name": "soup", "method": "linear"}, {"name": "lines", "lines": {}}]}}

    def fronts(self):
        return self._fronts


def pt(t, kl, r1, r2):
    return {"weights": [t, 1 - t], "objectives": {"kl": {"mean": kl}, "r1": {"mean": r1}, "r2": {"mean": r2}}}


def test_reward_at_matched_kl_by_hand():
    soup = [pt(0.0, 1.0, 0.0, 1.0), pt(0.5, 0.5, 0.5, 0.5), pt(1.0, 1.0, 1.0, 0.0)]
    # LiNeS: KL falls linearly from 2 at t=0 to 0 at t=1 (a path through the weights), rewards shifted by +0.2.
    lines = [pt(0.0, 2.0, 0.2, 1.2), pt(0.5, 1.0, 0.7, 0.7), pt(1.0, 0.0, 1.2, 0.2)]
    gains = matched_kl_gains(Fake({"soup": soup, "lines": lines}), np.array([1.0, 1.0]), [True, True])
    assert gains["soup"] == pytest.approx({(0.0, 1.0): 0.0, (0.5, 0.5): 0.0, (1.0, 0.0): 0.0})
    # soup at t=0 (KL 1): lines reaches KL 1 at t=0.5 → rewards (0.7, 0.7); weights (0, 1): 0.7 − 1.0 = −0.3.
    # soup at t=0.5 (KL 0.5): lines at t=0.75 → (0.95, 0.45); weights (.5, .5): .5·(.95−.5) + .5·(.45−.5) = 0.2.
    # soup at t=1 (KL 1): lines at t=0.5 → (0.7, 0.7); weights (1, 0): 0.7 − 1.0 = −0.3.
    assert gains["lines"] == pytest.approx({(0.0, 1.0): -0.3, (0.5, 0.5): 0.2, (1.0, 0.0): -0.3})
    difference, count = matched_kl_difference(gains, "lines", "soup")
    assert count == 3 and difference == pytest.approx((-0.3 + 0.2 - 0.3) / 3)
    # A front whose KL never reaches the soup's is unmatched there, not extrapolated.
    far = [pt(0.0, 5.0, 0, 0), pt(1.0, 4.0, 0, 0)]
    assert matched_kl_gains(Fake({"soup": soup, "far": far}), np.ones(2), [True, True])["far"] == {}
