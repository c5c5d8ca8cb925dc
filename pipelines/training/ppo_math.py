"""PPO's maths on tensors (Schulman et al. 2017, in the RLHF form of Ziegler et al. 2019 / Stiennon et al. 2020).

Shapes: a rollout is B responses of at most T tokens. `mask` [B, T] is 1 on each response's tokens (its EOS
included) and 0 after the response ended; responses are contiguous from position 0. Position t of `logprobs`,
`values` is the policy's log-probability of response token t and the value of the state before it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    return masked_sum(x, mask, dim) / (mask.sum() if dim is None else mask.sum(dim)).clamp_min(1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of the masked entries (0 where fewer than two)."""
    count = mask.sum()
    centred = (x - masked_mean(x, mask)) * mask
    return (centred ** 2).sum() / (count - 1).clamp_min(1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the masked entries; `shift_mean=False` keeps the mean (rewards: scaled, not centred).
    Entries outside the mask are 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) on tokens sampled from π (http://joschu.net/blog/kl-approx.html):
    k1 = log π − log π_ref (unbiased, can be negative), k3 = (r − 1) − log r with r = π_ref / π (≥ 0)."""
    log_ratio = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; use 'k1' or 'k3'")


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of each response's last token (its length − 1)."""
    return (mask.sum(1).long() - 1).clamp_min(0)


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: −β·KL at every response token, plus the sequence's score at its last token."""
    rewards = -kl_coef * kl * mask
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_index(mask)] += scores.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016): (advantages, returns), 0 outside the mask.
    A response's last token is terminal: the value after it is 0."""
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = advantage
        next_advantage, next_value = advantage, values[:, t] * mask[:, t]
    return advantages, (advantages + values) * mask


@dataclass
class LossTerms:
    loss: torch.Tensor
    clip_fraction: torch.Tensor


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip: float) -> LossTerms:
    """L = E[max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε))], ρ = π/π_old; the clip fraction is where the clipped term won."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return LossTerms(masked_mean(torch.maximum(unclipped, clipped), mask),
                     masked_mean((clipped > unclipped).to(advantages.dtype), mask))


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip: float) -> LossTerms:
    """L = ½ E[max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²)]."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped, clipped = (values - returns) ** 2, (clipped_values - returns) ** 2
    return LossTerms(0.5 * masked_mean(torch.maximum(unclipped, clipped), mask),
                     masked_mean((clipped > unclipped).to(values.dtype), mask))


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token entropy of the distributions `logits` [B, T, V] over the masked positions."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return masked_mean(-(logp.exp() * logp).sum(-1), mask)


def approx_kl(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """½ E[(log π − log π_old)²]: how far an update moved the policy from the one that sampled."""
    return 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Var[R − V] / Var[R] over the masked positions (1: perfect values, 0: no better than a constant)."""
    var_returns = masked_var(returns, mask)
    return 1 - masked_var(returns - values, mask) / var_returns.clamp_min(1e-12)


class KLController:
    """The KL coefficient β: fixed (`target` None), or the proportional controller of Ziegler et al. 2019:
    e = clip(KL / target − 1, −0.2, 0.2); β ← β·(1 + e·n_steps / horizon), with KL the rollout's mean KL per
    response and n_steps the responses it held."""

    def __init__(self, init: float, target: float | None = None, horizon: float | None = None):
        if (target is None) != (horizon is None):
            raise ValueError("an adaptive KL coefficient needs both a target and a horizon")
        self.value, self.target, self.horizon = float(init), target, horizon

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def update(self, kl: float, n_steps: int) -> float:
        if self.adaptive:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
