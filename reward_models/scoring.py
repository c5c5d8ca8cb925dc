"""Score one set of generations with every reward: raw and normalised values, with the normalisation used."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .base import PolicyHandle, Reward


@dataclass
class RewardScores:
    """Scores of one reward over one set of pairs, in input order. Summaries (means, standard errors over
    prompts) are the pipelines' job: see pipelines/summary.py."""

    name: str
    values: np.ndarray  # normalised (equal to raw when the normaliser is 'raw')
    raw: np.ndarray
    higher_is_better: bool
    normalization: dict = field(default_factory=dict)


def score_rewards(rewards: Sequence[Reward], prompts: Sequence[str], responses: Sequence[str],
                  policy: PolicyHandle | None = None) -> dict[str, RewardScores]:
    """Every reward on the same pairs; policy metrics get `policy`, the others ignore it."""
    results: dict[str, RewardScores] = {}
    for reward in rewards:
        raw = reward.score(prompts, responses, policy=policy)
        normalizer = reward.normalizer
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
        normalizer = reward.normalizer
        if normalizer.method == "zscore" and (refit or not normalizer.fitted):
            normalizer.fit(reward.score(prompts, responses, policy=policy))
