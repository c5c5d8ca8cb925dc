"""The merge-method registry: what a method declares (`MergeMethod`), and where methods are registered and looked up.

Recipes validate method names and parameters here, the engine dispatches here (and streams row blocks only
for elementwise methods), LoRA soups and the engine's fused pass use the linear coefficients, and sweep caches
use the canonical form. The methods themselves are declared in `native_methods` (this project's) and
`mergekit_methods` (mergekit's namesakes), which register into this module; `lines/__init__.py` imports both, so
every method is registered before anything of `lines` is used. A new method is one
`register_method(MergeMethod(...))` call; the maths stays a pure function on tensors in `merge_methods`.

    register_method(MergeMethod(
        name="scaled_sum", params=ScaledSumParams,          # a StrictModel subclass (extra="forbid")
        merge=lambda tvs, weights, p, ctx: p["scale"] * mm.task_arithmetic(tvs, weights),
        elementwise=True))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable

import torch
from pydantic import AfterValidator, BaseModel

from .errors import LinesError


@dataclass(frozen=True)
class MergeContext:
    """What a merge may need beyond the task vectors and weights of one tensor (or row block)."""

    tensor_name: str
    seed: int  # the recipe's seed
    # θ0's tensor (or row block) in the compute dtype, for methods declared with needs_base (else None).
    base: torch.Tensor | None = None


# merge(tvs (N, *shape), weights (N,), parameters, context) -> τ_merged (*shape); parameters are the schema's
# model_dump after `resolve`, so every default is filled.
MergeFn = Callable[[torch.Tensor, torch.Tensor, dict, MergeContext], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    name: str
    params: type[BaseModel]
    merge: MergeFn
    # Each output entry depends only on the same entry of the inputs: the engine may merge row blocks.
    elementwise: bool = False
    # (weights, parameters) -> c with τ_merged = Σ_i c_i τ_i, for methods linear in the task vectors. The
    # engine then fuses θ0 + λ·τ_merged into one pass, and LoRA policies get an exact soup adapter.
    coefficients: Callable[[torch.Tensor, dict], torch.Tensor] | None = None
    # (weights, parameters) -> None, raising ValueError with a one-line reason when they do not fit.
    check: Callable[[list[float], dict], None] | None = None
    # (weights, parameters) -> parameters with values derived from the weights filled in (slerp's t).
    resolve: Callable[[list[float], dict], dict] | None = None
    # The result depends on the recipe seed (random drops): the seed is part of the canonical form.
    seeded: bool = False
    # The merge reads θ0 itself, not only the task vectors (mergekit's slerp of weights, its unnormalised linear).
    needs_base: bool = False
    # With `normalize: true` the weights must be non-negative with a positive sum (this project's methods). mergekit's
    # methods have their own rule for normalising, declared in their `check`.
    normalize_needs_positive_weights: bool = True

    def resolved_parameters(self, weights: list[float], params: dict) -> dict:
        return self.resolve(weights, params) if self.resolve is not None else params

    def linear_coefficients(self, weights: torch.Tensor, params: dict) -> torch.Tensor | None:
        return self.coefficients(weights, params) if self.coefficients is not None else None

    def validate(self, weights: list[float], params: dict) -> None:
        """Raise ValueError when the weights do not fit the (validated) parameters."""
        if self.check is not None:
            self.check(weights, params)
        if self.normalize_needs_positive_weights and params.get("normalize", False) and (
                min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"method {self.name} normalises weights: they must be non-negative with a "
                             f"positive sum (got {weights}); or set parameters.normalize: false")

    def canonical(self, weights: list[float], params: dict, seed: int) -> dict:
        """A JSON-able description equal for equal merges: a linear method is task_arithmetic with its
        coefficients (computed in fp64), derived parameters are filled in, and the seed kept only if it matters."""
        params = self.resolved_parameters(list(weights), params)
        name = self.name
        coefficients = self.linear_coefficients(torch.tensor(weights, dtype=torch.float64), params)
        if coefficients is not None:
            name, weights, params = "task_arithmetic", coefficients.tolist(), {}
        # + 0.0 turns -0.0 into 0.0, so the JSON of equal weights is equal too.
        out = {"method": name, "weights": [round(w, 12) + 0.0 for w in weights], "parameters": params}
        if self.seeded:
            out["seed"] = seed
        return out


_REGISTRY: dict[str, MergeMethod] = {}


def register_method(method: MergeMethod, replace: bool = False) -> MergeMethod:
    if method.name in _REGISTRY and not replace:
        raise ValueError(f"merge method {method.name!r} is already registered; pass replace=True to redefine it")
    if method.params.model_config.get("extra") != "forbid":
        raise ValueError(f"parameters of merge method {method.name!r} must forbid extra fields "
                         f"(subclass StrictModel)")
    _REGISTRY[method.name] = method
    return method


def unregister_method(name: str) -> None:
    _REGISTRY.pop(name, None)


def method_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def _unknown(name: object) -> str:
    return f"unknown merge method {name!r}; use one of {', '.join(_REGISTRY)}"


def get_method(name: str) -> MergeMethod:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LinesError(_unknown(name)) from None


def _known(name: str) -> str:
    if name not in _REGISTRY:
        raise ValueError(_unknown(name))
    return name


# A config field naming a merge method, checked against the registry when validated (a Literal would freeze
# the names at import time).
MethodName = Annotated[str, AfterValidator(_known)]
