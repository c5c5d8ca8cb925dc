"""mergekit's semantics for the methods both tools name alike, as merge methods of this project (`mergekit_*`).

A mergekit config read by `lines merge` is merged with these, so it gives what `mergekit-yaml` gives; this project's
own `linear`, `ties`, `dare_*` and `slerp` keep their own semantics. The maths follows mergekit 0.1.5
(merge_methods/generalized_task_arithmetic.py, linear.py, slerp.py, sparsify.py), operation for operation, on the
task vectors τ_i = θ_i − θ0 in the compute dtype. Where they differ from this project's methods of the same name:

- linear: mergekit averages whole weights, Σ w_i θ_i / Σ w_i, with θ0 one of the inputs if it has a weight. That is
  this project's soup when normalised; `normalize: false` gives Σ w_i θ_i, which is not θ0 plus a combination of task
  vectors unless Σ w_i = 1.
- ties: keeps the max(1, ⌊density·n⌋) largest |τ_i| (this project: round(density·n)), elects the sign of Σ w_i τ_i
  with ties going to +, keeps entries whose *weighted* sign w_i τ_i agrees (a negative weight flips), divides by the
  agreeing weights' sum (1 where it is 0), then scales by `lambda`; density is per model; `rescale` multiplies each
  trimmed τ_i back to its L1 norm.
- dare_*: the kept entries are rescaled to the L1 norm of τ_i (`rescale`, on by default), not by 1/density; not
  normalised by default. The drop masks are Bernoulli(density) draws from this project's seeded generator (per seed,
  tensor and model), not from mergekit's global torch generator: the same law, other draws.
- slerp: interpolates θ0 and the other model's *weights* (t = 0 gives θ0), lerping where |cos| > 0.9995; this
  project's slerp interpolates two task vectors.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from .merge_methods import dare_keep_mask, dare_seed
from .method_registry import MergeContext, MergeMethod, register_method
from .schema import StrictModel

Density = Annotated[float, Field(ge=0)]
# Absolute and L1 thresholds of mergekit (generalized_task_arithmetic.py, sparsify.py, slerp.py).
DIVISOR_EPS = 1e-8
RESCALE_EPS = 1e-7
SLERP_DOT_THRESHOLD = 0.9995
SLERP_NORM_EPS = 1e-8
SLERP_CHUNK = 1024 * 1024


def _per_model(weights: torch.Tensor, tvs: torch.Tensor) -> torch.Tensor:
    return weights.reshape((-1,) + (1,) * (tvs.dim() - 1))


def rescaled(tv: torch.Tensor, mask: torch.Tensor, rescale: bool) -> torch.Tensor:
    """τ·mask, scaled back to τ's L1 norm when `rescale` (left alone where either norm is below 1e-7)."""
    masked = tv * mask
    if not rescale:
        return masked
    before, after = tv.abs().sum(), masked.abs().sum()
    if before < RESCALE_EPS or after < RESCALE_EPS:
        return masked
    return masked * (before / after)


def magnitude(tv: torch.Tensor, density: float, rescale: bool) -> torch.Tensor:
    """Keep the max(1, ⌊density·n⌋) entries of largest magnitude. The order among equal magnitudes is mergekit's:
    torch.argsort of |τ| in fp32, so the two tools keep the same entries."""
    if density >= 1:
        return tv
    if density <= 0 or tv.numel() == 0:
        return torch.zeros_like(tv)
    k = max(1, int(density * tv.numel()))
    mask = torch.zeros(tv.numel(), dtype=tv.dtype, device=tv.device)
    magnitudes = tv.abs().reshape(-1)
    if magnitudes.device.type == "cpu":
        magnitudes = magnitudes.float()
    mask[torch.argsort(magnitudes, descending=True)[:k]] = 1
    return rescaled(tv, mask.reshape_as(tv), rescale)


def bernoulli(tv: torch.Tensor, density: float, rescale: bool, seed: int) -> torch.Tensor:
    """Keep each entry with probability `density` (this project's seeded keep mask)."""
    if density >= 1:
        return tv
    mask = dare_keep_mask(tuple(tv.shape), density, seed).to(device=tv.device, dtype=tv.dtype)
    return rescaled(tv, mask, rescale)


def generalized_task_arithmetic(tvs: torch.Tensor, weights: torch.Tensor, densities: list[float],
                                sparsification: Literal["magnitude", "random"] | None, consensus: bool,
                                normalize: bool, rescale: bool, lambda_: float,
                                seeds: list[int] | None = None) -> torch.Tensor:
    """mergekit's GeneralizedTaskArithmeticMerge.merge_group, less θ0 (added back by the engine)."""
    if sparsification == "magnitude":
        deltas = torch.stack([magnitude(tv, d, rescale) for tv, d in zip(tvs, densities)])
    elif sparsification == "random":
        deltas = torch.stack([bernoulli(tv, d, rescale, s) for tv, d, s in zip(tvs, densities, seeds)])
    else:
        deltas = tvs.clone()
    w = _per_model(weights, deltas)
    deltas = deltas * w
    if consensus:
        # The 'sum' election on weighted deltas; a zero total elects +.
        majority = (deltas.sum(dim=0) >= 0).to(deltas.dtype) * 2 - 1
        mask = deltas.sign() == majority
        mixed = (deltas * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
    else:
        mixed = deltas.sum(dim=0)
        divisor = w.sum(dim=0)
        divisor[divisor.abs() < DIVISOR_EPS] = 1
    if normalize:
        mixed = mixed / divisor
    if lambda_ != 1:
        mixed = mixed * lambda_
    return mixed


def linear_of_weights(tvs: torch.Tensor, weights: torch.Tensor, base: torch.Tensor, normalize: bool) -> torch.Tensor:
    """Σ w_i θ_i (/ Σ w_i), less θ0: mergekit's linear merge of whole weights, accumulated in the compute dtype."""
    thetas = tvs + base.unsqueeze(0)
    result = (thetas * _per_model(weights, thetas)).sum(dim=0)
    if normalize:
        result = result / weights.sum()
    return result - base


def slerp_of_weights(base: torch.Tensor, tv: torch.Tensor, t: float) -> torch.Tensor:
    """mergekit's slerp from θ0 (t = 0) to θ = θ0 + τ (t = 1) over the whole tensor, less θ0. Norms and the dot
    product are taken over chunks of 2^20 entries as mergekit does, so the angle (and the lerp fallback near
    |cos| = 1) are decided from the same numbers."""
    dtype = torch.float64 if base.dtype == torch.float64 else torch.float32
    a = base.reshape(1, -1).to(dtype)
    b = (base + tv).reshape(1, -1).to(dtype)
    tt = torch.tensor(t, dtype=dtype).reshape(-1, 1)
    if not a.shape[1]:
        return torch.zeros_like(base)
    chunks = range(0, a.shape[1], SLERP_CHUNK)
    norm_a = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(a[:, s:s + SLERP_CHUNK], dim=1, keepdim=True) for s in chunks]), dim=0)
    norm_b = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(b[:, s:s + SLERP_CHUNK], dim=1, keepdim=True) for s in chunks]), dim=0)
    norm_a = torch.where(norm_a > SLERP_NORM_EPS, norm_a, 1)
    norm_b = torch.where(norm_b > SLERP_NORM_EPS, norm_b, 1)
    dot = torch.stack([((a[:, s:s + SLERP_CHUNK] / norm_a) * (b[:, s:s + SLERP_CHUNK] / norm_b)).sum(dim=1, keepdim=True)
                       for s in chunks]).sum(dim=0).clamp(-1, 1)
    linear = dot.abs() > SLERP_DOT_THRESHOLD
    theta = torch.acos(torch.where(linear, 0, dot))
    sin_theta = torch.sin(theta)
    coef_a = torch.where(linear, 1 - tt, torch.sin((1 - tt) * theta) / sin_theta)
    coef_b = torch.where(linear, tt, torch.sin(tt * theta) / sin_theta)
    result = (coef_a * a + coef_b * b).reshape(base.shape).to(base.dtype)
    return result - base


# -- declarations ---------------------------------------------------------------------------------------------

class MergekitLinearParams(StrictModel):
    normalize: bool = True


def _linear_check(weights: list[float], p: dict) -> None:
    if p["normalize"] and sum(weights) == 0:
        raise ValueError("mergekit's linear divides by the sum of the weights, which is 0 here; change a weight or "
                         "set normalize: false")


register_method(MergeMethod(
    "mergekit_linear", MergekitLinearParams,
    lambda tvs, w, p, ctx: linear_of_weights(tvs, w, ctx.base, p["normalize"]),
    elementwise=True, check=_linear_check, needs_base=True, normalize_needs_positive_weights=False))


class MergekitTaskArithmeticParams(StrictModel):
    normalize: bool = False
    lambda_: float = 1.0


def _task_arithmetic_coefficients(weights: torch.Tensor, p: dict) -> torch.Tensor:
    total = weights.sum()
    divisor = total if p["normalize"] and abs(float(total)) >= DIVISOR_EPS else 1.0
    return weights / divisor * p["lambda_"]


register_method(MergeMethod(
    "mergekit_task_arithmetic", MergekitTaskArithmeticParams,
    lambda tvs, w, p, ctx: generalized_task_arithmetic(tvs, w, [1.0] * len(w), None, False, p["normalize"], False,
                                                       p["lambda_"]),
    elementwise=True, coefficients=_task_arithmetic_coefficients, normalize_needs_positive_weights=False))


def _gta_params(default_normalize: bool, default_rescale: bool) -> type[StrictModel]:
    class Params(StrictModel):
        density: list[Density] | Density = 1.0  # one per policy, or one for all
        normalize: bool = default_normalize
        rescale: bool = default_rescale
        lambda_: float = 1.0
    return Params


def _densities_fit(weights: list[float], p: dict) -> None:
    if isinstance(p["density"], list) and len(p["density"]) != len(weights):
        raise ValueError(f"density has {len(p['density'])} values for {len(weights)} policies; give one per policy "
                         f"or one for all")


def _densities(weights: list[float], p: dict) -> dict:
    density = p["density"]
    return {**p, "density": list(density) if isinstance(density, list) else [density] * len(weights)}


def _gta(sparsification: str, consensus: bool):
    def merge(tvs: torch.Tensor, weights: torch.Tensor, p: dict, ctx: MergeContext) -> torch.Tensor:
        seeds = [dare_seed(ctx.seed, ctx.tensor_name, i) for i in range(len(weights))]
        return generalized_task_arithmetic(tvs, weights, p["density"], sparsification, consensus, p["normalize"],
                                           p["rescale"], p["lambda_"], seeds)
    return merge


for _name, _sparsification, _consensus, _normalize, _rescale in [
        ("mergekit_ties", "magnitude", True, True, False),
        ("mergekit_dare_ties", "random", True, False, True),
        ("mergekit_dare_linear", "random", False, False, True)]:
    register_method(MergeMethod(
        _name, _gta_params(_normalize, _rescale), _gta(_sparsification, _consensus), check=_densities_fit,
        resolve=_densities, seeded=_sparsification == "random", normalize_needs_positive_weights=False))


class MergekitSlerpParams(StrictModel):
    t: float


def _slerp_check(weights: list[float], p: dict) -> None:
    if len(weights) != 1:
        raise ValueError(f"mergekit's slerp interpolates θ0 and one other model, got {len(weights)} policies")


register_method(MergeMethod(
    "mergekit_slerp", MergekitSlerpParams, lambda tvs, w, p, ctx: slerp_of_weights(ctx.base, tvs[0], p["t"]),
    check=_slerp_check, needs_base=True, normalize_needs_positive_weights=False))
