"""Score one set of generations with every reward: raw values, normalised values and their statistics."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .base import PolicyHandle, Reward
from .normalize import Normalizer


@dataclass
class RewardScores:
    """Scores of one reward over one set of pairs, in input order."""

    name: str
    values: np.ndarray  # normalised (equal to raw when the normaliser is 'raw')
    raw: np.ndarray
    higher_is_better: bool
    normalization: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.values.size else math.nan

    @property
    def stderr(self) -> float:
        n = self.values.size
        return float(self.values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan

    def summary(self) -> dict:
        return {"name": self.name, "mean": self.mean, "stderr": self.stderr, "n": int(self.values.size),
                "raw_mean": float(self.raw.mean()) if self.raw.size else math.nan,
                "higher_is_better": self.higher_is_better, "normalization": self.normalization}


def normalizer_of(reward: Reward) -> Normalizer:
    return getattr(reward, "normalizer", None) or Normalizer()


def score_rewards(rewards: Sequence[Reward], prompts: Sequence[str], responses: Sequence[str],
                  policy: PolicyHandle | None = None) -> dict[str, RewardScores]:
    """Every reward on the same pairs; policy metrics get `policy`, the others ignore it."""
    results: dict[str, RewardScores] = {}
    for reward in rewards:
        raw = reward.score(prompts, responses, policy=policy)
        normalizer = normalizer_of(reward)
        results[reward.name] = RewardScores(reward.name, normalizer.apply(raw, reward.name), raw,
                                            reward.higher_is_better, normalizer.record())
    return results


def fit_normalizers(rewards: Sequence[Reward], prompts: Sequence[str], responses: Sequence[str],
                    policy: PolicyHandle | None = None, refit: bool = False) -> None:
    """Fit the z-score statistics of every z-score reward on reference pairs (e.g. θ0's samples).

    `policy` is the model that produced the reference (θ0) for rewards that need one. Normalisers
    already fitted from a reference file are kept unless `refit`.
    """
    for reward in rewards:
        normalizer = normalizer_of(reward)
        if normalizer.method == "zscore" and (refit or not normalizer.fitted):
            normalizer.fit(reward.score(prompts, responses, policy=policy))
