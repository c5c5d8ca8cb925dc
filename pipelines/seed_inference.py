"""Inference over seeds: the seeds of a study are its replicates (θ0 and the policies retrained per seed), so the
pooled answer to a comparison is a statement about the per-seed differences d_1 … d_n, not about prompts.

    summarize_seeds(d, level, margin)  → mean, its standard error, the t-interval at `level`, the exact sign-flip
                                         p-value, the TOST equivalence p-value within ±margin, the design's MDE
    sign_flip_pvalue(d)                → two-sided permutation p-value of mean(d) = 0 (exhaustive for ≤ 16 seeds)
    holm(p)                            → Holm-adjusted p-values across a family of comparisons
    tost_pvalue(d, margin)             → the larger of the two one-sided t-tests of |mean| ≥ margin
    minimum_detectable_effect(sd, n)   → the true difference a two-sided t-test at α detects with `power`
    verdicts(rows, alpha)              → each row's Holm-adjusted verdict (family = the rows given)

A verdict is one of: "a better" / "b better" when the Holm-adjusted sign-flip p-value is below α (the direction is
the sign of the mean); "equivalent" when TOST shows |difference| < margin at α; otherwise "not shown" — no clear
difference is never read as no difference.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
from scipy import stats

EXHAUSTIVE_MAX = 16          # 2^16 sign vectors: exhaustive below, Monte Carlo above
MONTE_CARLO_DRAWS = 100_000


def _diffs(d: Sequence[float]) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if d.ndim != 1 or d.size < 2 or not np.all(np.isfinite(d)):
        raise ValueError(f"inference over seeds needs at least two finite per-seed differences, got {d.tolist()}")
    return d


def t_interval(d: Sequence[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, standard error, low, high): Student's t-interval of the mean of the per-seed differences."""
    d = _diffs(d)
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    half = float(stats.t.ppf(0.5 + level / 2, d.size - 1)) * se
    return mean, se, mean - half, mean + half


def sign_flip_pvalue(d: Sequence[float], seed: int = 0) -> float:
    """Two-sided p-value of the paired sign-flip (permutation) test: under no difference, each seed's difference is as
    likely with either sign, so p = share of the 2^n sign vectors whose |mean| is at least the observed one. Exact
    (every vector) for n ≤ EXHAUSTIVE_MAX; above, MONTE_CARLO_DRAWS random vectors with the observed one counted."""
    d = _diffs(d)
    observed = abs(d.mean()) * (1 - 1e-12)  # ties count as extreme (floating-point sums of the same values)
    if d.size <= EXHAUSTIVE_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d) / d.size >= observed))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(MONTE_CARLO_DRAWS, d.size))
    extreme = int(np.sum(np.abs(signs @ d) / d.size >= observed))
    return (extreme + 1) / (MONTE_CARLO_DRAWS + 1)


def smallest_sign_flip_pvalue(n: int) -> float:
    """The smallest p-value an exact two-sided sign-flip test over n seeds can give (all differences one sign)."""
    return 2.0 / 2 ** n


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the k-th smallest p times (m − k + 1), made monotone, capped at 1; controls the
    family-wise error rate over the m comparisons."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def tost_pvalue(d: Sequence[float], margin: float) -> float:
    """Two one-sided t-tests of equivalence: H0 mean ≤ −margin and H0 mean ≥ +margin; the TOST p-value is the larger
    of the two (equivalence within ±margin is shown at α when it is below α)."""
    if not margin > 0:
        raise ValueError(f"an equivalence margin must be positive, got {margin}")
    d = _diffs(d)
    mean, se = d.mean(), d.std(ddof=1) / math.sqrt(d.size)
    if se == 0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = stats.t.sf((mean + margin) / se, d.size - 1)   # H0: mean ≤ −margin
    upper = stats.t.cdf((mean - margin) / se, d.size - 1)  # H0: mean ≥ +margin
    return float(max(lower, upper))


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The true mean difference a two-sided one-sample t-test at `alpha` over n seeds detects with `power`, given the
    seed-to-seed standard deviation `sd` of the differences: (t_{1−α/2, n−1} + t_{power, n−1}) · sd / √n."""
    if n < 2:
        raise ValueError("a minimum detectable effect needs at least two seeds")
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def summarize_seeds(d: Sequence[float], level: float = 0.95, margin: float | None = None,
                    alpha_family: float | None = None, power: float = 0.8) -> dict:
    """Everything the report states about one comparison's per-seed differences (before the family's adjustment)."""
    d = _diffs(d)
    mean, se, low, high = t_interval(d, level)
    alpha = 1 - level if alpha_family is None else alpha_family
    sd = float(d.std(ddof=1))
    return {"n": int(d.size), "mean": mean, "sd": sd, "stderr": se, "low": low, "high": high, "level": level,
            "t_p": float(2 * stats.t.sf(abs(mean) / se, d.size - 1)) if se > 0 else (0.0 if mean else 1.0),
            "sign_flip_p": sign_flip_pvalue(d), "margin": margin,
            "tost_p": tost_pvalue(d, margin) if margin else None,
            "mde": minimum_detectable_effect(sd, d.size, alpha, power), "power": power}


def verdicts(rows: list[dict], alpha: float = 0.05) -> list[dict]:
    """The family's verdicts: each row (from summarize_seeds) with `holm_p` (Holm over the rows' sign-flip p-values)
    and `verdict` ("a better", "b better", "equivalent" or "not shown"). The rows given are the family."""
    adjusted = holm([row["sign_flip_p"] for row in rows]) if rows else []
    out = []
    for row, p in zip(rows, adjusted):
        if p < alpha:
            verdict = "a better" if row["mean"] > 0 else "b better"
        elif row.get("tost_p") is not None and row["tost_p"] < alpha:
            verdict = "equivalent"
        else:
            verdict = "not shown"
        out.append({**row, "holm_p": p, "alpha": alpha, "verdict": verdict})
    return out
