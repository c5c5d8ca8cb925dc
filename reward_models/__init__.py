"""One scoring interface for rewards and policy metrics: `Reward.score(prompts, responses, policy=None)`.

    from reward_models import build_rewards, score_rewards, PolicyHandle
    rewards = build_rewards(config["rewards"], base_model=theta0)
    scores = score_rewards(rewards, prompts, responses, policy=PolicyHandle(model, tokenizer))
"""
from .base import PolicyHandle, Reward, check_scores
from .callable_reward import CallableReward, import_target
from .config import (REWARD_TYPES, RewardSpec, RewardSpecField, build_reward, build_rewards, check_unique_names,
                     parse_reward_spec, reward_identity, reward_type)
from .errors import RewardError
from .hf_reward_model import HFRewardModel
from .normalize import Normalizer
from .policy_metrics import HeldOutPerplexity, KLToBase, token_logprobs
from .rules import CharLength, Conciseness, KeywordPresence, LexicalDiversity, Readability, VaderSentiment
from .scoring import RewardScores, fit_normalizers, score_rewards

__all__ = [
    "PolicyHandle", "Reward", "check_scores", "CallableReward", "import_target", "build_reward", "build_rewards",
    "parse_reward_spec", "REWARD_TYPES", "RewardSpec", "RewardSpecField", "check_unique_names", "reward_identity",
    "reward_type", "RewardError", "HFRewardModel", "Normalizer", "HeldOutPerplexity", "KLToBase",
    "token_logprobs", "CharLength", "Conciseness", "KeywordPresence", "LexicalDiversity", "Readability",
    "VaderSentiment", "RewardScores", "fit_normalizers", "score_rewards",
]
