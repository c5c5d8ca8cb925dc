"""The one summary convention and the one significance rule of the project.

Summary: the prompt is the unit. Samples of one prompt are not independent (they share the prompt), so a
score's standard error is the standard deviation of the per-prompt means over √(number of prompts); the
bootstrap of the report resamples prompts for the same reason. The training stage's manifests and the sweep's
points both summarise this way.

Significance: a difference is called real when its interval at `LEVEL` excludes zero. For two means on the
same prompts (θ0 vs a policy, two sweep points) the interval is the normal one of the paired per-prompt
differences; for hypervolumes it is the paired bootstrap interval of the report.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

LEVEL = 0.95


def summarize(values: Sequence[float], prompt_ids: Sequence[str], prompt_order: Sequence[str] | None = None) -> dict:
    """Mean over samples, per-prompt means (in `prompt_order`, default: first appearance), standard error over
    prompts, and counts."""
    values = np.asarray(values, dtype=np.float64)
    order = list(dict.fromkeys(prompt_ids)) if prompt_order is None else list(prompt_order)
    index = {prompt_id: i for i, prompt_id in enumerate(order)}
    where = np.array([index[p] for p in prompt_ids], dtype=np.int64)
    n_prompts = len(order)
    sums = np.bincount(where, weights=values, minlength=n_prompts)
    counts = np.bincount(where, minlength=n_prompts)
    per_prompt = sums / np.maximum(counts, 1)
    spread = float(per_prompt.std(ddof=1)) if n_prompts > 1 else math.nan
    return {"mean": float(values.mean()) if values.size else math.nan,
            "stderr": spread / math.sqrt(n_prompts) if n_prompts > 1 else math.nan,
            "n": int(values.size), "n_prompts": int(n_prompts), "per_prompt": per_prompt.tolist()}


def direction(low: float, high: float) -> int:
    """The rule applied to an interval: +1 when it lies above zero, −1 below, 0 when it includes zero."""
    return 1 if low > 0 else -1 if high < 0 else 0


def critical_value(level: float = LEVEL) -> float:
    """The two-sided normal quantile of `level` (1.96 at 0.95)."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def compare(a: dict, b: dict, level: float = LEVEL) -> dict:
    """a − b for two summaries on the same prompts: the difference of means, the standard error of the paired
    per-prompt differences, its normal interval at `level` and whether that interval excludes zero."""
    first, second = np.asarray(a["per_prompt"], dtype=np.float64), np.asarray(b["per_prompt"], dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"paired comparison needs the same prompts ({first.size} vs {second.size} per-prompt means)")
    difference = a["mean"] - b["mean"]
    paired = first - second
    stderr = float(paired.std(ddof=1) / math.sqrt(paired.size)) if paired.size > 1 else math.nan
    half = critical_value(level) * stderr
    low, high = difference - half, difference + half
    return {"difference": difference, "stderr": stderr, "low": low, "high": high, "level": level,
            "significant": direction(low, high) != 0}
