"""The merge recipe: a YAML file validated field by field, with one-line errors that say how to fix it.

    base_model: PATH
    models:
      - {model: PATH, weight: 0.3}
      - {model: PATH, weight: 0.7}
    method: linear          # linear | task_arithmetic | ties | dare_linear | dare_ties | consensus | slerp
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
from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import LinesError
from .merge_methods import METHODS
from .safetensors_writer import parse_size
from .validation import describe_validation_error, first_error, read_yaml_mapping

DTYPES = ("float32", "float16", "bfloat16", "float64")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelEntry(_Strict):
    model: str
    weight: float = 1.0

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class LinesConfig(_Strict):
    """LiNeS: λ(ℓ) = α + β·ℓ/(L−1). `gamma` is the single-task form (α = γ, β = 1 − γ)."""

    alpha: Union[float, Literal["auto"], None] = None
    beta: float | None = None
    gamma: float | None = None
    head_depth: Literal["alpha", "last"] = "alpha"

    @model_validator(mode="after")
    def _one_form(self):
        if self.gamma is not None:
            if self.alpha is not None or self.beta is not None:
                raise ValueError("give either gamma (single-task form) or alpha and beta, not both")
            if not 0.0 <= self.gamma <= 1.0:
                raise ValueError("gamma must lie in [0, 1]")
        elif self.alpha is None or self.beta is None:
            raise ValueError("needs alpha (a number or 'auto') and beta, or gamma alone")
        return self


class LinearParams(_Strict):
    normalize: bool = True


class TaskArithmeticParams(_Strict):
    pass


class TiesParams(_Strict):
    density: float = Field(gt=0.0, le=1.0)
    normalize: bool = True


class DareParams(_Strict):
    density: float = Field(gt=0.0, le=1.0)
    normalize: bool = True


class ConsensusParams(_Strict):
    k: int = Field(default=2, ge=1)
    tall_lambda: float = Field(default=1.0, gt=0.0)
    normalize: bool = False


class SlerpParams(_Strict):
    t: float | None = Field(default=None, ge=0.0, le=1.0)


METHOD_PARAMS: dict[str, type[BaseModel]] = {
    "linear": LinearParams, "task_arithmetic": TaskArithmeticParams, "ties": TiesParams,
    "dare_linear": DareParams, "dare_ties": DareParams, "consensus": ConsensusParams, "slerp": SlerpParams,
}


class MergeSpec(_Strict):
    """What to compute from the task vectors: method, weights and LiNeS. Shared by disk and in-memory merges."""

    method: Literal[METHODS] = "linear"  # type: ignore[valid-type]
    weights: list[float]
    parameters: dict = Field(default_factory=dict)
    lines: LinesConfig | None = None
    seed: int = 0
    compute_dtype: Literal["float32", "float64"] = "float32"

    @model_validator(mode="after")
    def _method_fits(self):
        try:
            params = METHOD_PARAMS[self.method].model_validate(self.parameters)
        except ValidationError as exc:
            raise ValueError(f"parameters of method {self.method}: {first_error(exc)}") from None
        self.parameters = params.model_dump()
        n = len(self.weights)
        if self.method == "slerp":
            if n != 2:
                raise ValueError(f"slerp merges exactly two policies, got {n}")
            if params.t is None and (min(self.weights) < 0 or sum(self.weights) <= 0):
                raise ValueError("slerp without parameters.t needs non-negative weights with a positive sum "
                                 "(t = w2 / (w1 + w2))")
        if self.method == "consensus" and params.k > n:
            raise ValueError(f"consensus k={params.k} exceeds the number of policies ({n})")
        if getattr(params, "normalize", False):
            if min(self.weights) < 0 or sum(self.weights) <= 0:
                raise ValueError(f"method {self.method} normalises weights: they must be non-negative with a "
                                 f"positive sum (got {self.weights}); or set parameters.normalize: false")
        if self.lines is not None and self.lines.gamma is not None and n != 1:
            raise ValueError("lines.gamma is the single-task edit of one policy; with several policies "
                             "give alpha (or 'auto') and beta")
        return self

    def slerp_t(self) -> float:
        t = self.parameters.get("t")
        return t if t is not None else self.weights[1] / (self.weights[0] + self.weights[1])


class Recipe(_Strict):
    base_model: str
    models: list[ModelEntry] = Field(min_length=1)
    method: Literal[METHODS] = "linear"  # type: ignore[valid-type]
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


def load_recipe(path: str | Path) -> Recipe:
    return parse_recipe(read_yaml_mapping(path, LinesError, "recipe"), str(path))
