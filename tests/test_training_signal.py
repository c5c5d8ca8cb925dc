"""A reward where lower is better is a signal to minimise: every trainer interface (trl's reward functions, DPO's
best-vs-worst pairs, the MORL objective) receives it negated, and a higher-is-better one unchanged."""
from __future__ import annotations

import numpy as np
import pytest

from pipelines.training.preference_pairs import best_worst_pairs
from pipelines.training.rewards import TrlRewardFunction, WeightedSum, to_maximise
from reward_models import CallableReward


def char_count(prompts, responses):
    return [float(len(r)) for r in responses]


LONG = CallableReward(char_count, "long")
SHORT = CallableReward(char_count, "short", higher_is_better=False)  # the same score, to be minimised


def test_trl_reward_functions_return_what_to_maximise():
    responses = ["a", "three words here", "xx"]
    assert TrlRewardFunction(LONG)(["p"] * 3, responses) == [1.0, 16.0, 2.0]
    assert TrlRewardFunction(SHORT)(["p"] * 3, responses) == [-1.0, -16.0, -2.0]
    assert to_maximise(SHORT, np.array([2.0])).tolist() == [-2.0]
    assert to_maximise(LONG, np.array([2.0])).tolist() == [2.0]


def rows(scores_by_prompt: dict[str, list[float]], name: str) -> list[dict]:
    return [{"prompt_id": p, "prompt": p, "response": f"{p}-{i}", "scores": {name: s}}
            for p, scores in scores_by_prompt.items() for i, s in enumerate(scores)]


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_dpo_pairs_prefer_the_better_sample_in_the_rewards_direction(higher_is_better):
    data = rows({"a": [1.0, 5.0, 3.0], "b": [2.0, 2.05, 9.0]}, "x")
    pairs = best_worst_pairs(data, "x", min_margin=0.5, higher_is_better=higher_is_better)
    high, low = ("a-1", "a-0") if higher_is_better else ("a-0", "a-1")
    assert pairs[0] == {"prompt": "a", "chosen": high, "rejected": low,
                        "chosen_score": 5.0 if higher_is_better else 1.0,
                        "rejected_score": 1.0 if higher_is_better else 5.0, "margin": 4.0}
    assert [(p["chosen"], p["rejected"]) for p in pairs[1:]] == [("b-2", "b-0") if higher_is_better else ("b-0", "b-2")]


def test_the_morl_objective_maximises_every_component_in_its_direction():
    prompts, reference = ["p"] * 4, ["a", "bb bb", "ccc", "dddd dd d"]
    objective = WeightedSum("morl", {"long": LONG, "short": SHORT}, {"long": 0.25, "short": 0.75})
    objective.fit(prompts, reference)
    chars = np.array([len(r) for r in reference], dtype=np.float64)
    z = (chars - chars.mean()) / chars.std()
    np.testing.assert_allclose(objective.score(prompts, reference), 0.25 * z - 0.75 * z, rtol=0, atol=1e-12)
    # Longer responses: better for `long`, worse for `short` (which weighs three times more): the objective drops.
    longer = [r + " more" for r in reference]
    assert objective.score(prompts, longer).mean() < objective.score(prompts, reference).mean()
