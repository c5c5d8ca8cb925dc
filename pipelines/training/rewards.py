"""Rewards as training signals: built from the config, combined for MORL, wrapped for trl trainers."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from reward_models import Reward, RewardError, build_rewards, fit_normalizers
from reward_models.normalize import Normalizer

from .errors import TrainingError


def build_reward_table(specs: list[dict], base_model=None) -> dict[str, Reward]:
    """Every configured reward by name. `base_model` (θ0, loaded) serves `kl` rewards without a path."""
    try:
        rewards = build_rewards(specs, base_model=base_model)
    except RewardError as err:
        raise TrainingError(str(err)) from None
    return {reward.name: reward for reward in rewards}


def to_maximise(reward: Reward, scores: np.ndarray) -> np.ndarray:
    """Scores as the quantity a trainer pushes up: trl's trainers and DPO's best-vs-worst pairs always maximise, so a
    reward where lower is better (`higher_is_better: false`) is negated on its way in."""
    return scores if reward.higher_is_better else -scores


def check_trainable(reward: Reward, where: str) -> None:
    if reward.needs_policy:
        raise TrainingError(f"{where}: reward '{reward.name}' is a metric of the policy itself (KL, perplexity) and "
                            "cannot be a training signal; train on another reward and keep this one for evaluation")


class WeightedSum(Reward):
    """Σ_i w_i · r_i, each r_i z-scored on θ0's samples when `normalize` is 'zscore' (the MORL baseline), and negated
    where lower is better: the objective is one to maximise."""

    def __init__(self, name: str, components: dict[str, Reward], weights: dict[str, float], normalize: str = "zscore"):
        super().__init__(name)
        self.components, self.weights, self.normalize = components, weights, normalize
        self.scalers = {n: Normalizer() for n in weights}

    def fit(self, prompts: Sequence[str], responses: Sequence[str]) -> None:
        """z-score statistics of every component from reference pairs (θ0's samples)."""
        if self.normalize != "zscore":
            return
        for name in self.weights:
            scaler = Normalizer()
            scaler.method = "zscore"
            scaler.fit(self.components[name].score(prompts, responses))
            self.scalers[name] = scaler

    def _score(self, prompts, responses, policy):
        total = np.zeros(len(prompts))
        for name, weight in self.weights.items():
            raw = self.components[name].score(prompts, responses)
            total += weight * to_maximise(self.components[name], self.scalers[name].apply(raw, name))
        return total

    def describe(self) -> dict:
        return {**super().describe(), "weights": self.weights, "normalize": self.normalize,
                "statistics": {n: s.record() for n, s in self.scalers.items()}}


def message_text(item) -> str:
    """Text of a trl prompt/completion: a string, or the last message of a conversation."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item and isinstance(item[-1], dict):
        return str(item[-1].get("content", ""))
    return str(item)


class TrlRewardFunction:
    """A Reward as a trl reward function: fn(prompts, completions, **kwargs) -> list[float].

    trl names reward functions by `__name__` in its logs (`rewards/<name>/mean`), so it carries the reward's
    name. Conversational prompts/completions (chat-template models) are reduced to their text. trl maximises what
    it returns: a lower-is-better reward is negated (so its logged mean is −reward).
    """

    def __init__(self, reward: Reward):
        self.reward = reward
        self.__name__ = reward.name

    def __call__(self, prompts, completions, **kwargs) -> list[float]:
        return to_maximise(self.reward, self.reward.score([message_text(p) for p in prompts],
                                                          [message_text(c) for c in completions])).tolist()


def fit_reward_normalizers(rewards: Sequence[Reward], prompts, responses) -> None:
    """z-score rewards (normalize: zscore in their spec) are fitted on θ0's samples."""
    fit_normalizers([r for r in rewards if not r.needs_policy], prompts, responses)
