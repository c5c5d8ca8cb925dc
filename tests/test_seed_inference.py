"""Inference over seeds against independent computations: scipy's one-sample t-test and t-interval, an exhaustive
enumeration of sign flips written as a plain loop, Holm as the textbook step-down loop, TOST as the (1−2α) interval."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from pipelines.seed_inference import (holm, minimum_detectable_effect, sign_flip_pvalue, smallest_sign_flip_pvalue,
                                      summarize_seeds, t_interval, tost_pvalue, verdicts)

RNG = np.random.default_rng(7)
SAMPLES = [RNG.normal(0.02, 0.05, n) for n in (3, 5, 10, 12)] + [np.array([0.1, 0.2, -0.05, 0.07])]


@pytest.mark.parametrize("d", SAMPLES)
def test_t_interval_is_scipys(d):
    mean, se, low, high = t_interval(d, 0.9)
    ref = stats.ttest_1samp(d, 0.0).confidence_interval(0.9)
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-12, abs=1e-15)
    assert se == pytest.approx(stats.sem(d)) and mean == pytest.approx(d.mean())
    assert summarize_seeds(d)["t_p"] == pytest.approx(stats.ttest_1samp(d, 0.0).pvalue, rel=1e-10)


def enumerate_sign_flips(d):
    """Every assignment of signs, one at a time, in exact rational-free float loops."""
    observed = abs(sum(d) / len(d))
    extreme = total = 0
    for signs in itertools.product((1, -1), repeat=len(d)):
        total += 1
        flipped = abs(sum(s * x for s, x in zip(signs, d)) / len(d))
        extreme += flipped >= observed - 1e-12
    return extreme / total


@pytest.mark.parametrize("d", SAMPLES)
def test_sign_flip_is_the_exhaustive_enumeration(d):
    assert sign_flip_pvalue(d) == pytest.approx(enumerate_sign_flips(list(d)), abs=1e-15)


def test_sign_flip_floor_and_peer():
    assert sign_flip_pvalue([0.1, 0.2, 0.3]) == 0.25 == smallest_sign_flip_pvalue(3)
    assert sign_flip_pvalue(np.arange(1, 11) / 10) == pytest.approx(2 / 1024)
    d = SAMPLES[2]
    peer = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                                  alternative="two-sided")
    assert sign_flip_pvalue(d) == pytest.approx(peer.pvalue, abs=1e-12)
    big = RNG.normal(0.3, 1.0, 20)  # Monte Carlo above 16 seeds: close to scipy's exact enumeration
    peer = stats.permutation_test((big,), np.mean, permutation_type="samples", n_resamples=np.inf)
    assert sign_flip_pvalue(big) == pytest.approx(peer.pvalue, abs=0.01)


def holm_loop(p, alpha):
    """Textbook Holm: reject in order of increasing p while p_(k) ≤ α / (m − k + 1)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected = [False] * len(p)
    for k, i in enumerate(order):
        if p[i] <= alpha / (len(p) - k):
            rejected[i] = True
        else:
            break
    return rejected


@pytest.mark.parametrize("p", [[0.01, 0.04, 0.03, 0.005], [0.2, 0.001, 0.012, 0.049, 0.0125, 0.9],
                               list(RNG.uniform(0, 0.1, 8))])
def test_holm_matches_the_step_down_loop(p):
    adjusted = holm(p)
    for alpha in (0.01, 0.05, 0.1):
        assert [a <= alpha for a in adjusted] == holm_loop(p, alpha)
    assert all(a >= q for a, q in zip(adjusted, p)) and max(adjusted) <= 1


@pytest.mark.parametrize("d", SAMPLES)
def test_tost_is_the_interval_at_one_minus_two_alpha(d):
    alpha = 0.05
    _, _, low, high = t_interval(d, 1 - 2 * alpha)
    for margin in (0.01, 0.05, 0.1, 0.3):
        assert (tost_pvalue(d, margin) < alpha) == (-margin < low and high < margin)
    # The p-value itself: the larger one-sided test, computed with scipy's ttest_1samp.
    lower = stats.ttest_1samp(d, -0.05, alternative="greater").pvalue
    upper = stats.ttest_1samp(d, 0.05, alternative="less").pvalue
    assert tost_pvalue(d, 0.05) == pytest.approx(max(lower, upper), rel=1e-10)


def test_mde_gives_the_stated_power():
    """At the MDE, the noncentral t gives the stated power (the MDE formula is the usual approximation)."""
    n, sd = 10, 0.09
    mde = minimum_detectable_effect(sd, n)
    crit = stats.t.ppf(0.975, n - 1)
    power = stats.nct.sf(crit, n - 1, mde / (sd / np.sqrt(n)))
    assert power == pytest.approx(0.8, abs=0.02)


def test_verdicts():
    clear = summarize_seeds(np.linspace(0.05, 0.15, 10), margin=0.02)
    flat = summarize_seeds(np.array([0.001, -0.002, 0.0015, -0.001, 0.0005, 0.0, -0.0005, 0.001, -0.001, 0.0002]),
                           margin=0.02)
    noisy = summarize_seeds(RNG.normal(0.0, 0.2, 10), margin=0.02)
    rows = verdicts([clear, flat, noisy])
    assert [r["verdict"] for r in rows] == ["a better", "equivalent", "not shown"]
    assert verdicts([summarize_seeds(-np.linspace(0.05, 0.15, 10))])[0]["verdict"] == "b better"
    three = verdicts([summarize_seeds([0.1, 0.2, 0.3])])  # three seeds can never show a difference at 5%
    assert three[0]["verdict"] == "not shown"
