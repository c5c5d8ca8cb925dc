"""Merge methods: pure functions from per-tensor task vectors to one merged task vector.

Every function takes `tvs`, the task vectors τ_i = θ_i − θ0 of one tensor stacked on a new first dimension
(shape (N, *shape), fp32 or fp64), and `weights` (shape (N,), same dtype), and returns τ_merged (shape
`*shape`). LiNeS scaling and adding θ0 back happen outside, in the engine. Each method is declared (name,
parameters, properties) in `method_registry`, which points at these functions.
"""
from __future__ import annotations

import hashlib

import torch


def _broadcast(weights: torch.Tensor, tvs: torch.Tensor) -> torch.Tensor:
    return weights.reshape((-1,) + (1,) * (tvs.dim() - 1))


def normalized(weights: torch.Tensor) -> torch.Tensor:
    return weights / weights.sum()


def task_arithmetic(tvs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i τ_i."""
    return (tvs * _broadcast(weights, tvs)).sum(0)


def linear(tvs: torch.Tensor, weights: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The rewarded soup: the weighted average Σ_i w_i τ_i / Σ_i w_i (a plain weighted sum if not normalize)."""
    return task_arithmetic(tvs, normalized(weights) if normalize else weights)


# -- TIES (Yadav et al. 2023): trim, elect sign, disjoint mean ----------------------------------------------

def trim_to_density(tv: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the round(density·n) entries of largest magnitude (per tensor), zero the rest."""
    n = tv.numel()
    k = int(round(density * n))
    if k >= n:
        return tv.clone()
    flat = tv.reshape(-1)
    kept = torch.zeros_like(flat)
    if k > 0:
        index = flat.abs().topk(k, sorted=False).indices
        kept[index] = flat[index]
    return kept.reshape(tv.shape)


def elect_sign(weighted_tvs: torch.Tensor) -> torch.Tensor:
    """The sign of the total weighted mass per entry ('sum' election of the TIES paper)."""
    return torch.sign(weighted_tvs.sum(0))


def disjoint_merge(tvs: torch.Tensor, weights: torch.Tensor, sign: torch.Tensor,
                   normalize: bool = True) -> torch.Tensor:
    """Mean over the models whose (non-zero) entry agrees with the elected sign, weighted by w_i."""
    agree = (torch.sign(tvs) == sign.unsqueeze(0)) & (tvs != 0)
    w = _broadcast(weights, tvs) * agree
    total = (tvs * w).sum(0)
    if not normalize:
        return total
    denominator = w.sum(0)
    return torch.where(denominator != 0, total / torch.where(denominator != 0, denominator, 1), 0)


def ties(tvs: torch.Tensor, weights: torch.Tensor, density: float, normalize: bool = True) -> torch.Tensor:
    trimmed = torch.stack([trim_to_density(tv, density) for tv in tvs])
    sign = elect_sign(trimmed * _broadcast(weights, trimmed))
    return disjoint_merge(trimmed, weights, sign, normalize)


# -- DARE (Yu et al. 2024): drop and rescale -----------------------------------------------------------------

def dare_seed(seed: int, tensor_name: str, model_index: int) -> int:
    """A seed that depends only on (recipe seed, tensor, model): results do not depend on the order in
    which tensors are processed, on sharding, or on which process merges which tensor."""
    digest = hashlib.sha256(f"{seed}\0{tensor_name}\0{model_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def dare_keep_mask(shape: tuple[int, ...], density: float, seed: int) -> torch.Tensor:
    """Bernoulli(density) keep mask drawn from a CPU generator seeded by `seed` (deterministic)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen) < density


def dare_drop(tvs: torch.Tensor, density: float, seeds: list[int]) -> torch.Tensor:
    """Drop each entry with probability 1−density and rescale the kept ones by 1/density."""
    masks = torch.stack([dare_keep_mask(tuple(tvs.shape[1:]), density, s) for s in seeds]).to(tvs.device)
    return tvs * masks / density


def dare_linear(tvs: torch.Tensor, weights: torch.Tensor, density: float, seeds: list[int],
                normalize: bool = True) -> torch.Tensor:
    return linear(dare_drop(tvs, density, seeds), weights, normalize)


def dare_ties(tvs: torch.Tensor, weights: torch.Tensor, density: float, seeds: list[int],
              normalize: bool = True) -> torch.Tensor:
    dropped = dare_drop(tvs, density, seeds)
    sign = elect_sign(dropped * _broadcast(weights, dropped))
    return disjoint_merge(dropped, weights, sign, normalize)


# -- Consensus (Wang et al. 2024, TALL masks) ---------------------------------------------------------------

def consensus(tvs: torch.Tensor, weights: torch.Tensor, k: int = 2, tall_lambda: float = 1.0,
              normalize: bool = False) -> torch.Tensor:
    """Task arithmetic restricted to entries that at least k tasks consider their own.

    Task t's TALL mask keeps entries where |w_t τ_t| > λ·|τ_MTL − w_t τ_t|, τ_MTL = Σ_i w_i τ_i: the task's
    contribution dominates the rest of the merge there. The consensus mask keeps entries where at least k
    masks agree; the result is τ_MTL on those entries and 0 elsewhere.
    """
    w = normalized(weights) if normalize else weights
    weighted = tvs * _broadcast(w, tvs)
    mtl = weighted.sum(0)
    tall_masks = weighted.abs() > tall_lambda * (mtl.unsqueeze(0) - weighted).abs()
    return torch.where(tall_masks.sum(0) >= k, mtl, 0)


# -- SLERP of two task vectors (as in WARP, Ramé et al. 2024) --------------------------------------------

def slerp(tvs: torch.Tensor, t: float, collinear_eps: float = 1e-6) -> torch.Tensor:
    """Spherical interpolation between τ_1 and τ_2 at t ∈ [0, 1] (t = 0 gives τ_1):
    sin((1−t)Ω)/sin Ω · τ_1 + sin(tΩ)/sin Ω · τ_2, Ω the angle between them (per tensor).
    Falls back to linear interpolation where the angle is degenerate (collinear or zero vectors)."""
    a, b = tvs[0], tvs[1]
    norm_a, norm_b = a.norm(), b.norm()
    if norm_a == 0 or norm_b == 0:
        return (1 - t) * a + t * b
    cos = torch.clamp((a.reshape(-1) @ b.reshape(-1)) / (norm_a * norm_b), -1.0, 1.0)
    omega = torch.arccos(cos)
    sin_omega = torch.sin(omega)
    if float(sin_omega) < collinear_eps:
        return (1 - t) * a + t * b
    return (torch.sin((1 - t) * omega) / sin_omega) * a + (torch.sin(t * omega) / sin_omega) * b

