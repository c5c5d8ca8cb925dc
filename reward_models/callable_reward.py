"""A user's own reward function, named by dotted path: `mypkg.rewards:polite` → fn(prompts, responses)."""
from __future__ import annotations

import importlib
from typing import Callable

from .base import Reward
from .errors import RewardError


def import_target(target: str) -> Callable:
    """Resolve 'package.module:function' (or 'package.module.function') to the callable."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise RewardError(f"callable target '{target}' is not a dotted path; write it as 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RewardError(f"callable target '{target}': cannot import module '{module_name}' ({err}); "
                          "check the spelling and that the package is on PYTHONPATH") from None
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise RewardError(f"callable target '{target}': module '{module_name}' has no attribute '{attr}'")
    if not callable(fn):
        raise RewardError(f"callable target '{target}' is not callable")
    return fn


class CallableReward(Reward):
    """Calls fn(prompts, responses) once per `batch_size` pairs; the result is checked for length and
    finiteness by `Reward.score`, so a user bug is one line naming the reward, not a numpy traceback."""

    def __init__(self, fn: Callable | str, name: str | None = None, higher_is_better: bool = True,
                 batch_size: int | None = None):
        self.fn = import_target(fn) if isinstance(fn, str) else fn
        super().__init__(name or getattr(self.fn, "__name__", "callable"))
        self.higher_is_better = higher_is_better
        self.batch_size = batch_size

    def _score(self, prompts, responses, policy):
        step = self.batch_size or len(prompts)
        out: list[float] = []
        for start in range(0, len(prompts), step):
            chunk = list(self.fn(prompts[start:start + step], responses[start:start + step]))
            if len(chunk) != len(prompts[start:start + step]):
                raise RewardError(f"reward '{self.name}': {getattr(self.fn, '__qualname__', self.fn)} returned "
                                  f"{len(chunk)} values for {len(prompts[start:start + step])} responses; "
                                  "return one float per response")
            out.extend(chunk)
        return out
