"""PPO's maths (pipelines/training/ppo_math.py) against plain fp64 Python over the same numbers."""
from __future__ import annotations

import math
import random

import pytest
import torch

from pipelines.training import ppo_math


def random_rollout(seed: int, batch: int = 6, width: int = 9):
    """Random rewards and values, and responses of random lengths (1 … width: several end early)."""
    rng = random.Random(seed)
    lengths = [rng.randint(1, width) for _ in range(batch)]
    lengths[0], lengths[1] = 1, width  # one that ends at once, one that runs to the limit
    rewards = [[rng.gauss(0, 1) for _ in range(width)] for _ in range(batch)]
    values = [[rng.gauss(0, 1) for _ in range(width)] for _ in range(batch)]
    return lengths, rewards, values


def mask_of(lengths: list[int], width: int) -> torch.Tensor:
    return torch.tensor([[1.0 if t < n else 0.0 for t in range(width)] for n in lengths], dtype=torch.float64)


def reference_gae(rewards: list[float], values: list[float], length: int, gamma: float, lam: float):
    """GAE of one response of `length` tokens, written out: δ_t = r_t + γV_{t+1} − V_t with V_length = 0,
    A_t = Σ_k (γλ)^k δ_{t+k}; returns R_t = A_t + V_t."""
    deltas = [rewards[t] + gamma * (values[t + 1] if t + 1 < length else 0.0) - values[t] for t in range(length)]
    advantages = [sum((gamma * lam) ** k * deltas[t + k] for k in range(length - t)) for t in range(length)]
    return advantages, [a + v for a, v in zip(advantages, values)]


@pytest.mark.parametrize("seed, gamma, lam", [(0, 1.0, 0.95), (1, 0.9, 1.0), (2, 0.99, 0.0), (3, 0.5, 0.7)])
def test_gae_and_returns_equal_the_sums_written_out_for_responses_that_end_early(seed, gamma, lam):
    lengths, rewards, values = random_rollout(seed)
    width = len(rewards[0])
    mask = mask_of(lengths, width)
    advantages, returns = ppo_math.gae(torch.tensor(rewards, dtype=torch.float64),
                                       torch.tensor(values, dtype=torch.float64), mask, gamma, lam)
    for row, length in enumerate(lengths):
        want_adv, want_ret = reference_gae(rewards[row], values[row], length, gamma, lam)
        assert advantages[row].tolist() == pytest.approx(want_adv + [0.0] * (width - length), abs=1e-12)
        assert returns[row].tolist() == pytest.approx(want_ret + [0.0] * (width - length), abs=1e-12)


def test_gae_with_lambda_one_and_no_discount_is_the_reward_to_go_minus_the_value():
    lengths, rewards, values = random_rollout(7)
    width = len(rewards[0])
    advantages, returns = ppo_math.gae(torch.tensor(rewards, dtype=torch.float64),
                                       torch.tensor(values, dtype=torch.float64), mask_of(lengths, width), 1.0, 1.0)
    for row, length in enumerate(lengths):
        to_go = [sum(rewards[row][t:length]) for t in range(length)]
        assert returns[row, :length].tolist() == pytest.approx(to_go, abs=1e-12)
        assert advantages[row, :length].tolist() == pytest.approx(
            [g - v for g, v in zip(to_go, values[row])], abs=1e-12)


def test_token_rewards_put_the_score_on_the_last_token_and_the_kl_penalty_on_every_token():
    lengths = [1, 4, 3]
    mask = mask_of(lengths, 4)
    kl = torch.tensor([[0.5, 9, 9, 9], [0.1, 0.2, 0.3, 0.4], [-0.2, 0.0, 0.6, 9]], dtype=torch.float64)
    scores = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    rewards = ppo_math.token_rewards(scores, kl, mask, kl_coef=0.1)
    want = [[-0.05 + 2.0, 0, 0, 0], [-0.01, -0.02, -0.03, -0.04 - 1.0], [0.02, 0.0, -0.06 + 0.5, 0]]
    assert rewards.tolist() == [pytest.approx(row, abs=1e-12) for row in want]


def test_kl_estimators_are_the_log_ratio_and_k3():
    logp = torch.tensor([math.log(0.5), math.log(0.2)], dtype=torch.float64)
    ref = torch.tensor([math.log(0.25), math.log(0.4)], dtype=torch.float64)
    assert ppo_math.kl_per_token(logp, ref, "k1").tolist() == pytest.approx([math.log(2), math.log(0.5)])
    # k3 = r − 1 − log r with r = π_ref/π
    assert ppo_math.kl_per_token(logp, ref, "k3").tolist() == pytest.approx(
        [0.5 - 1 - math.log(0.5), 2 - 1 - math.log(2)])


# -- clipped losses at hand-picked ratios on both sides of the clip ------------------------------------------------

def reference_policy_loss(ratio: float, advantage: float, clip: float) -> tuple[float, bool]:
    unclipped = -advantage * ratio
    clipped = -advantage * min(max(ratio, 1 - clip), 1 + clip)
    return max(unclipped, clipped), clipped > unclipped


# (ratio, advantage): inside the band, above it and below it, with positive and negative advantages.
CASES = [(1.0, 1.0), (1.1, 2.0), (1.5, 2.0), (1.5, -2.0), (0.5, 2.0), (0.5, -2.0), (0.7, -1.0), (1.3, 0.5),
         (0.9, -0.3)]


def test_clipped_policy_loss_equals_the_formula_at_ratios_inside_and_outside_the_clip():
    clip = 0.2
    ratios = torch.tensor([[r for r, _ in CASES]], dtype=torch.float64)
    advantages = torch.tensor([[a for _, a in CASES]], dtype=torch.float64)
    old = torch.zeros_like(ratios) - 1.0
    mask = torch.ones_like(ratios)
    for index in range(len(CASES)):  # one token at a time: the loss is that token's term
        only = torch.zeros_like(mask)
        only[0, index] = 1
        terms = ppo_math.clipped_policy_loss(old + torch.log(ratios), old, advantages, only, clip)
        want, clipped = reference_policy_loss(*CASES[index], clip)
        assert terms.loss.item() == pytest.approx(want, abs=1e-12)
        assert terms.clip_fraction.item() == (1.0 if clipped else 0.0)
    terms = ppo_math.clipped_policy_loss(old + torch.log(ratios), old, advantages, mask, clip)
    want = [reference_policy_loss(r, a, clip) for r, a in CASES]
    assert terms.loss.item() == pytest.approx(sum(w for w, _ in want) / len(CASES), abs=1e-12)
    assert terms.clip_fraction.item() == pytest.approx(sum(c for _, c in want) / len(CASES))
    # The clipped cases: (1.5, +2) gains nothing beyond 1.2; (0.5, −2) is pinned at 0.8; (1.5, −2) and (0.5, +2)
    # keep their unclipped (pessimistic) term.
    assert [c for _, c in want] == [False, False, True, False, False, True, True, True, False]


def test_clipped_policy_loss_has_no_gradient_where_the_clip_holds():
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5]], dtype=torch.float64)).requires_grad_()
    advantages = torch.tensor([[2.0, -2.0, -2.0]], dtype=torch.float64)
    ppo_math.clipped_policy_loss(logp, torch.zeros_like(logp), advantages, torch.ones_like(logp), 0.2).loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 2] == 0
    assert logp.grad[0, 1] == pytest.approx(2.0 * 1.5 / 3)  # d/dlogρ of (2ρ)/3


def test_clipped_value_loss_equals_the_formula_inside_and_outside_the_clip():
    clip = 0.2
    # (new value, old value, return)
    cases = [(1.0, 1.0, 0.0), (1.5, 1.0, 2.0), (1.5, 1.0, 0.0), (0.5, 1.0, 0.0), (0.5, 1.0, 2.0), (1.1, 1.0, 3.0)]
    values, old, returns = (torch.tensor([[c[i] for c in cases]], dtype=torch.float64) for i in range(3))
    terms = ppo_math.clipped_value_loss(values, old, returns, torch.ones_like(values), clip)
    want, fractions = [], []
    for v, o, r in cases:
        clipped_v = o + min(max(v - o, -clip), clip)
        want.append(0.5 * max((v - r) ** 2, (clipped_v - r) ** 2))
        fractions.append((clipped_v - r) ** 2 > (v - r) ** 2)
    assert terms.loss.item() == pytest.approx(sum(want) / len(cases), abs=1e-12)
    assert terms.clip_fraction.item() == pytest.approx(sum(fractions) / len(cases))
    assert fractions == [False, True, False, True, False, False]  # the clip binds when it moves V away from R


# -- the KL controller against its update rule ---------------------------------------------------------------------

def test_adaptive_kl_controller_follows_its_update_rule():
    controller = ppo_math.KLController(0.1, target=6.0, horizon=10000)
    beta = 0.1
    for kl in [6.0, 12.0, 3.0, 0.0, 6.6, 5.7, 100.0]:
        error = min(max(kl / 6.0 - 1, -0.2), 0.2)
        beta = beta * (1 + error * 256 / 10000)
        assert controller.update(kl, 256) == pytest.approx(beta, rel=1e-15)
    assert controller.value > 0


def test_adaptive_kl_controller_moves_beta_toward_the_target():
    controller = ppo_math.KLController(0.1, target=1.0, horizon=100)
    raised = controller.update(2.0, 10)  # KL above the target: β up
    assert raised > 0.1 and controller.update(0.5, 10) < raised  # below it: β down
    fixed = ppo_math.KLController(0.1)
    assert [fixed.update(kl, 64) for kl in (0.0, 50.0)] == [0.1, 0.1]
    with pytest.raises(ValueError, match="both a target and a horizon"):
        ppo_math.KLController(0.1, target=1.0)


# -- whitening and statistics --------------------------------------------------------------------------------------

def test_masked_whitening_uses_only_the_responses_tokens():
    lengths, rewards, _ = random_rollout(11)
    width = len(rewards[0])
    x = torch.tensor(rewards, dtype=torch.float64)
    mask = mask_of(lengths, width)
    kept = [rewards[r][t] for r in range(len(lengths)) for t in range(lengths[r])]
    mean = sum(kept) / len(kept)
    std = math.sqrt(sum((k - mean) ** 2 for k in kept) / (len(kept) - 1))
    white = ppo_math.masked_whiten(x, mask)
    kept_white = ppo_math.masked_whiten(x, mask, shift_mean=False)
    for r, length in enumerate(lengths):
        for t in range(width):
            if t < length:
                assert white[r, t].item() == pytest.approx((rewards[r][t] - mean) / std, abs=1e-7)
                assert kept_white[r, t].item() == pytest.approx((rewards[r][t] - mean) / std + mean, abs=1e-7)
            else:
                assert white[r, t] == 0 and kept_white[r, t] == 0


def test_explained_variance_and_entropy_against_their_definitions():
    lengths, returns, values = random_rollout(5)
    width = len(returns[0])
    mask = mask_of(lengths, width)
    pairs = [(returns[r][t], values[r][t]) for r in range(len(lengths)) for t in range(lengths[r])]

    def var(xs):
        m = sum(xs) / len(xs)
        return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    want = 1 - var([g - v for g, v in pairs]) / var([g for g, _ in pairs])
    got = ppo_math.explained_variance(torch.tensor(values, dtype=torch.float64),
                                      torch.tensor(returns, dtype=torch.float64), mask)
    assert got.item() == pytest.approx(want, abs=1e-10)

    logits = torch.tensor([[[0.0, math.log(3.0)], [5.0, 5.0]]], dtype=torch.float64)  # p = (1/4, 3/4), (1/2, 1/2)
    h1 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert ppo_math.entropy(logits, torch.tensor([[1.0, 1.0]])).item() == pytest.approx((h1 + math.log(2)) / 2)
    assert ppo_math.entropy(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(h1)
