"""Choose LiNeS' β (and the control's λ) on the validation prompts by hypervolume of the reward front."""
from __future__ import annotations

import numpy as np

from ..pareto import hypervolume, orient


def reward_matrix(points: list[dict], names: list[str], field: str = "mean") -> np.ndarray:
    """(points, objectives) array of one summary field (mean, stderr, ...) of point results."""
    return np.array([[p["objectives"][n][field] for n in names] for p in points], dtype=np.float64)


def normalisation(all_points: list[dict], rewards: list[str]) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """(reference, scale, directions): the reference is the worst observed value of each reward, the scale its
    observed range, in oriented (maximised) units; hypervolumes are then fractions of the unit box."""
    directions = [all_points[0]["objectives"][r]["higher_is_better"] for r in rewards]
    values = orient(reward_matrix(all_points, rewards), directions)
    low, high = values.min(axis=0), values.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    return low / scale, scale, directions


def front_hypervolume(points: list[dict], rewards: list[str], reference, scale, directions) -> float:
    return hypervolume(orient(reward_matrix(points, rewards), directions) / scale, reference)


def select_candidates(results: list[dict], rewards: list[str]) -> dict[str, dict]:
    """For every variant evaluated on validation: each candidate's hypervolume, the winner and its margin."""
    selection: dict[str, dict] = {}
    by_variant: dict[str, list[dict]] = {}
    for r in results:
        by_variant.setdefault(r["variant"], []).append(r)
    for variant, points in by_variant.items():
        reference, scale, directions = normalisation(points, rewards)
        hvs = {}
        for label in dict.fromkeys(p["candidate"] for p in points):
            front = [p for p in points if p["candidate"] == label]
            hvs[label] = front_hypervolume(front, rewards, reference, scale, directions)
        ranked = sorted(hvs.items(), key=lambda kv: (-kv[1], kv[0]))
        chosen, best = ranked[0]
        margin = best - ranked[1][1] if len(ranked) > 1 else 0.0
        selection[variant] = {"hypervolumes": hvs, "chosen": chosen, "margin": margin,
                              "rule": "largest validation hypervolume of the reward front (reference: worst "
                                      "observed value of each reward among this variant's candidates; "
                                      "rewards scaled by their observed range)"}
    return selection
