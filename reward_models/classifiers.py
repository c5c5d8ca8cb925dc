"""Learned text classifiers that ship as packages (no download at run time).

`ProfanityProbability`: alt-profanity-check's classifier (TF-IDF features and a calibrated linear SVM trained on
about 200k human-labelled texts; MIT): the probability that the response is offensive, in [0, 1]. Lower is better.
"""
from __future__ import annotations

from .base import Reward
from .errors import RewardError

INSTALL = "make install (the `real` extra: pip install -e '.[real]')"


class ProfanityProbability(Reward):
    higher_is_better = False

    def __init__(self, name: str = "profanity"):
        super().__init__(name)

    @staticmethod
    def check_available() -> None:
        import importlib.util  # only asked when the reward is used

        if importlib.util.find_spec("profanity_check") is None:
            raise RewardError(f"reward type profanity needs the package alt-profanity-check; run {INSTALL}")

    def _score(self, prompts, responses, policy):
        self.check_available()
        # deferred: alt-profanity-check is optional (the real extra) and loads scikit-learn
        from profanity_check import predict_prob

        return [float(p) for p in predict_prob(list(responses))]
