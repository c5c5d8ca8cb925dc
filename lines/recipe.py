"""The merge recipe: a YAML file validated field by field, with one-line errors that say how to fix it.

    base_model: PATH
    models:
      - {model: PATH, weight: 0.3}
      - {model: PATH, weight: 0.7}
    method: linear          # linear | task_arithmetic | ties | dare_linear | dare_ties | consensus | slerp
                            # (the methods registered in lines.method_registry)
    parameters: {}          # e.g. {density: 0.2}, {k: 2}, {normalize: false}, {t: 0.5}
    lines: {alpha: 0.3, beta: 0.6, head_depth: alpha}   # or alpha: auto, or gamma: 0.5; omit/null = no LiNeS
    dtype: bfloat16         # output dtype; default: θ0's
    max_shard_size: 2GB
    seed: 0
    compute_dtype: float32  # float64 for an exact-as-possible merge
    output: dense           # or adapter: LoRA policies' exact soup as one concatenated adapter

Relative paths are resolved against the current directory, as for any command-line tool.
"""
from __future__ import annotations

import math
from typing import Literal, Union

from pydantic import Field, ValidationError, field_validator, model_validator

from .config_errors import describe_validation_error, first_error
from .errors import LinesError
from .method_registry import MethodName, get_method
from .safetensors_writer import parse_size
from .schema import StrictModel
from .tensor_values import VaryingValue, evaluate

DTYPES = ("float32", "float16", "bfloat16", "float64")


class ModelEntry(StrictModel):
    model: str
    weight: float = 1.0

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class LinesConfig(StrictModel):
    """LiNeS: λ(ℓ) = α + β·ℓ/(L−1) ("increasing", the paper's), or α + β·(ℓ/(L−1) − ½) ("centered": the mean over
    the blocks stays α, shallow blocks below it, deep ones above). `gamma` is the single-task form (α = γ, β = 1 − γ).
    `alpha: auto` is ‖Σ w̄_i τ_i‖₁ / ‖τ_merged‖₁ with w̄ = w / Σw (the paper's rule at equal weights)."""

    alpha: Union[float, Literal["auto"], None] = None
    beta: float | None = None
    gamma: float | None = None
    head_depth: Literal["alpha", "last"] = "alpha"
    profile: Literal["increasing", "centered"] = "increasing"
    reverse: bool = False  # the same λ values in decreasing depth order (a control of depth order)
    scope: Literal["depth", "head"] = "depth"  # "head": only the final norm and the head scaled, by λ(L−1)

    @model_validator(mode="after")
    def _one_form(self):
        if self.gamma is not None:
            if self.alpha is not None or self.beta is not None:
                raise ValueError("give either gamma (single-task form) or alpha and beta, not both")
            if not 0.0 <= self.gamma <= 1.0:
                raise ValueError("gamma must lie in [0, 1]")
        elif self.alpha is None or self.beta is None:
            raise ValueError("needs alpha (a number or 'auto') and beta, or gamma alone")
        if self.gamma is not None and (self.profile != "increasing" or self.reverse or self.scope != "depth"):
            raise ValueError("the single-task edit gamma has the increasing profile (the last block keeps its update)")
        return self


class MergeSpec(StrictModel):
    """What to compute from the task vectors: method, weights and LiNeS. Shared by disk and in-memory merges."""

    method: MethodName = "linear"
    weights: list[float]
    parameters: dict = Field(default_factory=dict)
    lines: LinesConfig | None = None
    seed: int = 0
    compute_dtype: Literal["float32", "float64"] = "float32"
    # Values that differ between tensors (mergekit's per-layer gradients and name filters), keyed by what they set:
    # "weights.<i>", a parameter "<name>", or "<name>.<i>" for entry i of a per-policy parameter list. Where a
    # value's conditions match no tensor name, the static field above applies (unless the value is `required`).
    varying: dict[str, VaryingValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _method_fits(self):
        method = get_method(self.method)
        try:
            params = method.params.model_validate(self.parameters)
        except ValidationError as exc:
            raise ValueError(f"parameters of method {self.method}: {first_error(exc)}") from None
        self.parameters = params.model_dump()
        method.validate(self.weights, self.parameters)
        if self.lines is not None and self.lines.gamma is not None and len(self.weights) != 1:
            raise ValueError("lines.gamma is the single-task edit of one policy; with several policies "
                             "give alpha (or 'auto') and beta")
        for key in self.varying:
            self._slot(key)
        return self

    def _slot(self, key: str) -> tuple[list, int | str]:
        """(container, index) that varying `key` sets in a copy-free view of weights/parameters."""
        name, _, index = key.partition(".")
        if name == "weights" and index.isdigit() and int(index) < len(self.weights):
            return self.weights, int(index)
        if name in self.parameters and not index:
            return self.parameters, name
        if name in self.parameters and index.isdigit() and isinstance(self.parameters[name], list) \
                and int(index) < len(self.parameters[name]):
            return self.parameters[name], int(index)
        raise ValueError(f"varying value {key!r} names no weight or parameter of method {self.method}")

    def at(self, tensor_name: str, t: float) -> "MergeSpec":
        """The spec with every varying value resolved for one tensor at depth t (see lines.tensor_values.depth); the
        spec itself when nothing varies. Raises LinesError naming the tensor when the resolved values do not fit."""
        if not self.varying:
            return self
        resolved = self.model_copy(deep=True, update={"varying": {}, "lines": None})
        for key, setting in self.varying.items():
            value = evaluate(setting.conditions, tensor_name, t)
            if value is None:
                if setting.required:
                    raise LinesError(f"tensor {tensor_name!r}: no condition of {key} applies to it; add a condition "
                                     f"without a filter")
                continue
            container, index = resolved._slot(key)
            container[index] = value
        try:
            return MergeSpec.model_validate(resolved.model_dump())
        except ValidationError as exc:
            raise LinesError(f"tensor {tensor_name!r}: {first_error(exc)}") from None


def canonical_merge(spec: MergeSpec) -> dict:
    """A JSON-able description of what `spec` computes, equal for equal merges asked for in different ways
    (for cache keys): a method linear in the task vectors is task_arithmetic with its coefficients (so a
    normalised soup equals task_arithmetic with normalised weights), weights are rounded to 12 decimals,
    parameters have their defaults and derived values (slerp's t) filled, the seed is kept only where it
    changes the result (DARE), and LiNeS with α = 1, β = 0 is no LiNeS."""
    lines = spec.lines.model_dump() if spec.lines is not None else None
    if lines is not None:  # the controls' fields only when set, so that the keys of other merges never change
        lines = {k: v for k, v in lines.items() if not (k == "reverse" and not v or k == "scope" and v == "depth")}
    if lines is not None and lines["alpha"] == 1 and lines["beta"] == 0 and lines["gamma"] is None:
        lines = None
    out = {**get_method(spec.method).canonical(spec.weights, spec.parameters, spec.seed), "lines": lines,
           "compute_dtype": spec.compute_dtype}
    if spec.varying:  # only then, so that the keys of merges without per-tensor values never change
        out["varying"] = {key: value.model_dump() for key, value in sorted(spec.varying.items())}
    return out


class Recipe(StrictModel):
    base_model: str
    models: list[ModelEntry] = Field(min_length=1)
    method: MethodName = "linear"
    parameters: dict = Field(default_factory=dict)
    lines: LinesConfig | None = None
    dtype: Literal[DTYPES] | None = None  # type: ignore[valid-type]
    max_shard_size: Union[int, str] = "2GB"
    seed: int = 0
    compute_dtype: Literal["float32", "float64"] = "float32"
    # dense: a full checkpoint; adapter: one LoRA adapter of rank Σ r_i (LoRA policies, linear methods only)
    output: Literal["dense", "adapter"] = "dense"

    @field_validator("max_shard_size")
    @classmethod
    def _size(cls, v):
        parse_size(v)
        return v

    @model_validator(mode="after")
    def _spec_valid(self):
        try:
            self.spec()  # validates method, weights and parameters together
        except ValidationError as exc:
            raise ValueError(first_error(exc)) from None
        return self

    def spec(self) -> MergeSpec:
        return MergeSpec(method=self.method, weights=[m.weight for m in self.models], parameters=self.parameters,
                         lines=self.lines, seed=self.seed, compute_dtype=self.compute_dtype)

    @property
    def max_shard_bytes(self) -> int:
        return parse_size(self.max_shard_size)


def parse_recipe(data: object, source: str = "recipe") -> Recipe:
    if not isinstance(data, dict):
        raise LinesError(f"{source}: a recipe is a YAML mapping with base_model, models, method, ...")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise LinesError(describe_validation_error(exc, source)) from None
