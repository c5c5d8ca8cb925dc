"""The sweep's objectives: the rewards of the front and the metrics shown beside it, built once per sweep."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reward_models import Reward, RewardSpec, build_reward, reward_identity


@dataclass
class Objective:
    """A reward of the front (or a metric: closeness to θ0) and what its scores depend on (part of their key)."""

    reward: Reward
    identity: dict
    is_metric: bool

    @property
    def name(self) -> str:
        return self.reward.name


def build_objectives(rewards: list[RewardSpec], metrics: list[RewardSpec], base_model=None,
                     memo_file: Path | None = None) -> list[Objective]:
    """Rewards then metrics, in config order. `base_model`: θ0 loaded, for KL metrics without their own `base`."""
    objectives = []
    for section, specs in (("rewards", rewards), ("metrics", metrics)):
        for index, spec in enumerate(specs):
            reward = build_reward(spec, f"{section}[{index}] ({spec.name})",
                                  base_model=base_model if spec.wants_base_model() else None)
            objectives.append(Objective(reward, reward_identity(spec, memo_file), section == "metrics"))
    return objectives
