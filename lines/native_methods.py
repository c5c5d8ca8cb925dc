"""This project's own merge methods, declared into the registry (lines.method_registry): linear, task_arithmetic,
ties, dare_linear, dare_ties, consensus and slerp, with the semantics of `merge_methods`. Importing this module
registers them, in this order (the order error messages list them in); mergekit's namesakes are in
`mergekit_methods`.
"""
from __future__ import annotations

from typing import Callable

import torch
from pydantic import Field

from . import merge_methods as mm
from .method_registry import MergeContext, MergeFn, MergeMethod, register_method
from .schema import StrictModel


class LinearParams(StrictModel):
    normalize: bool = True


def _linear_coefficients(weights: torch.Tensor, p: dict) -> torch.Tensor:
    return mm.normalized(weights) if p["normalize"] else weights


register_method(MergeMethod(
    "linear", LinearParams, lambda tvs, w, p, ctx: mm.linear(tvs, w, p["normalize"]),
    elementwise=True, coefficients=_linear_coefficients))


class TaskArithmeticParams(StrictModel):
    pass


register_method(MergeMethod(
    "task_arithmetic", TaskArithmeticParams, lambda tvs, w, p, ctx: mm.task_arithmetic(tvs, w),
    elementwise=True, coefficients=lambda w, p: w))


class TiesParams(StrictModel):
    density: float = Field(gt=0.0, le=1.0)
    normalize: bool = True


register_method(MergeMethod(
    "ties", TiesParams, lambda tvs, w, p, ctx: mm.ties(tvs, w, p["density"], p["normalize"])))


class DareParams(StrictModel):
    density: float = Field(gt=0.0, le=1.0)
    normalize: bool = True


def _dare(fn: Callable) -> MergeFn:
    def merge(tvs: torch.Tensor, weights: torch.Tensor, p: dict, ctx: MergeContext) -> torch.Tensor:
        # One seed per (recipe seed, tensor, model): independent of tensor order, sharding and row blocks.
        seeds = [mm.dare_seed(ctx.seed, ctx.tensor_name, i) for i in range(len(weights))]
        return fn(tvs, weights, p["density"], seeds, p["normalize"])
    return merge


register_method(MergeMethod("dare_linear", DareParams, _dare(mm.dare_linear), seeded=True))
register_method(MergeMethod("dare_ties", DareParams, _dare(mm.dare_ties), seeded=True))


class ConsensusParams(StrictModel):
    k: int = Field(default=2, ge=1)
    tall_lambda: float = Field(default=1.0, gt=0.0)
    normalize: bool = False


def _consensus_check(weights: list[float], p: dict) -> None:
    if p["k"] > len(weights):
        raise ValueError(f"consensus k={p['k']} exceeds the number of policies ({len(weights)})")


register_method(MergeMethod(
    "consensus", ConsensusParams,
    lambda tvs, w, p, ctx: mm.consensus(tvs, w, p["k"], p["tall_lambda"], p["normalize"]),
    elementwise=True, check=_consensus_check))


class SlerpParams(StrictModel):
    t: float | None = Field(default=None, ge=0.0, le=1.0)


def _slerp_check(weights: list[float], p: dict) -> None:
    if len(weights) != 2:
        raise ValueError(f"slerp merges exactly two policies, got {len(weights)}")
    if p["t"] is None and (min(weights) < 0 or sum(weights) <= 0):
        raise ValueError("slerp without parameters.t needs non-negative weights with a positive sum "
                         "(t = w2 / (w1 + w2))")


def _slerp_resolve(weights: list[float], p: dict) -> dict:
    # t from the weights in Python floats (fp64), whatever the compute dtype.
    return {**p, "t": p["t"] if p["t"] is not None else weights[1] / (weights[0] + weights[1])}


register_method(MergeMethod(
    "slerp", SlerpParams, lambda tvs, w, p, ctx: mm.slerp(tvs, p["t"]),
    check=_slerp_check, resolve=_slerp_resolve))
