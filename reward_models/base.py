"""The scoring interface every reward, metric and reward model implements.

A reward maps (prompt, response) pairs to one float each. Rewards that need the policy being evaluated
(KL to θ0, held-out perplexity) declare `needs_policy = True` and receive it as
`score(prompts, responses, policy=PolicyHandle(model, tokenizer))`; every other reward ignores `policy`,
so the sweep can call all rewards the same way.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import RewardError
from .normalize import Normalizer


@dataclass
class PolicyHandle:
    """The policy currently being evaluated: a live causal LM and the tokenizer it generates with."""

    model: Any
    tokenizer: Any


class Reward(ABC):
    """A named reward. Subclasses implement `_score`; `score` validates input and output."""

    #: Pareto math maximises; metrics such as KL or perplexity set this to False so callers flip the sign.
    higher_is_better: bool = True
    #: True for metrics computed from the evaluated policy's weights (they need `policy=`).
    needs_policy: bool = False
    #: True for metrics of the policy on a fixed set of texts: `score_texts(policy)` gives one value per text
    #: (`text_ids`), the unit of their standard errors.
    per_text: bool = False
    #: True for metrics that take the sampled token ids: `score_ids(prompt_ids, response_ids, policy)`.
    uses_token_ids: bool = False

    def __init__(self, name: str):
        self.name = name
        # Raw unless the config asks for z-scores (see normalize.py and scoring.py).
        self.normalizer = Normalizer()

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              policy: PolicyHandle | None = None) -> np.ndarray:
        """One float64 per (prompt, response) pair, in input order."""
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise RewardError(f"reward '{self.name}': got {len(prompts)} prompts but {len(responses)} responses; "
                              "pass one prompt per response (repeat a prompt for several samples)")
        if self.needs_policy and policy is None:
            raise RewardError(f"reward '{self.name}' is computed from the evaluated policy: "
                              "call score(prompts, responses, policy=PolicyHandle(model, tokenizer))")
        if not prompts:
            return np.zeros(0, dtype=np.float64)
        values = self._score(prompts, responses, policy)
        return check_scores(self.name, values, len(prompts))

    @abstractmethod
    def _score(self, prompts: list[str], responses: list[str], policy: PolicyHandle | None) -> Sequence[float]:
        ...

    def describe(self) -> dict:
        """What is recorded next to the scores (name, kind, direction)."""
        return {"name": self.name, "type": type(self).__name__, "higher_is_better": self.higher_is_better}


def check_scores(name: str, values: Any, expected: int) -> np.ndarray:
    """Turn scores into a 1-D float64 array, refusing wrong lengths and NaN/inf with one clear line."""
    try:
        array = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise RewardError(f"reward '{name}' returned values that are not numbers ({err}); "
                          "return a sequence of floats, one per response") from None
    if array.shape[0] != expected:
        raise RewardError(f"reward '{name}' returned {array.shape[0]} scores for {expected} responses; "
                          "return exactly one float per response")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise RewardError(f"reward '{name}' returned a non-finite score ({array[bad[0]]}) at index {int(bad[0])}; "
                          "return finite floats (map undefined cases to a fixed value)")
    return array
