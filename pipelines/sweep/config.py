"""The main job's config: what to sweep, which rewards, prompts, sampling, and the report.

    run_name: demo
    output_dir: runs
    threads: 1                      # torch threads (null: torch's default)
    training: {...}                 # optional: train θ0 and the policies first (pipelines/train_policies.py)
    base_model: PATH                # θ0, when not trained here
    policies: {positive: PATH, long: PATH}   # one per reward, keyed by reward name
    rewards: [{name: positive, type: vader}, {name: long, type: length}]   # the front's objectives
    metrics: [{name: kl, type: kl}, {name: perplexity, type: perplexity, texts: held_out.jsonl}]
    prompts: {path: prompts.jsonl, n_validation: 32, n_eval: 128}
    generation: {temperature: 0.7, max_new_tokens: 48, n: 1, seed: 0}
    sweep:
      points: 11                    # two rewards; or `step: 0.25`, or an explicit `weights` list
      variants:
        - {name: soup, method: linear}
        - {name: lines, method: linear, lines: {alpha: auto, beta_grid: [0.25, 0.5, 1.0]}}
      uniform_control: {lambda_grid: null}   # null: the mean λ of each LiNeS candidate; false: off
      selection: hypervolume
    forgetting: {gamma_grid: [0.0, 0.25, 0.5, 0.75, 1.0]}   # or null
    bootstrap: {samples: 1000, level: 0.95, seed: 0}
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lines.merge_methods import METHODS
from lines.validation import describe_validation_error, read_yaml_mapping

from ..errors import PipelineError
from ..overrides import apply_overrides


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariantLines(_Strict):
    alpha: Union[float, Literal["auto"]] = "auto"
    beta: float | None = None
    beta_grid: list[float] | None = None
    head_depth: Literal["alpha", "last"] = "alpha"

    @model_validator(mode="after")
    def _one_beta(self):
        if (self.beta is None) == (self.beta_grid is None):
            raise ValueError("give either beta or beta_grid")
        if self.beta_grid is not None and not self.beta_grid:
            raise ValueError("beta_grid is empty")
        return self

    def betas(self) -> list[float]:
        return [self.beta] if self.beta is not None else list(self.beta_grid)


class VariantConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    method: Literal[METHODS] = "linear"  # type: ignore[valid-type]
    parameters: dict = Field(default_factory=dict)
    lines: VariantLines | None = None


class UniformControl(_Strict):
    lambda_grid: list[float] | None = None


class SweepConfig(_Strict):
    points: int | None = Field(11, ge=2)
    step: float | None = Field(None, gt=0, le=1)
    weights: list[list[float]] | None = None
    variants: list[VariantConfig] = Field(min_length=1)
    uniform_control: Union[UniformControl, Literal[False]] = Field(default_factory=UniformControl)
    selection: Literal["hypervolume"] = "hypervolume"
    # LoRA policies: "adapter" serves each point as its exact soup adapter (the base is never rewritten),
    # "dense" merges into the weights; "auto" = adapter when every policy is an adapter.
    lora_route: Literal["auto", "adapter", "dense"] = "auto"
    points_per_batch: int = Field(4, ge=1)  # adapter route: points generated together in one mixed batch

    @model_validator(mode="after")
    def _unique_names(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if "uniform" in names or "base" in names:
            raise ValueError("'uniform' and 'base' are reserved variant names")
        return self


class ForgettingConfig(_Strict):
    gamma_grid: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1)


class BootstrapConfig(_Strict):
    samples: int = Field(1000, ge=10)
    level: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class ReportConfig(_Strict):
    samples_shown: int = Field(3, ge=0)


class RunConfig(_Strict):
    run_name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    output_dir: str = "runs"
    seed: int = 0
    # torch intra-op threads for the whole job (null: torch's default). Small models on a few CPU cores run
    # fastest, and far more steadily on a shared machine, with 1.
    threads: int | None = Field(None, ge=1)
    training: dict | None = None
    base_model: str | None = None
    policies: dict[str, str] | None = None
    rewards: list[dict] = Field(min_length=1)
    metrics: list[dict] = Field(default_factory=list)
    prompts: dict
    generation: dict = Field(default_factory=dict)
    sweep: SweepConfig
    forgetting: ForgettingConfig | None = Field(default_factory=ForgettingConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _policies_or_training(self):
        if self.training is None and (self.base_model is None or self.policies is None):
            raise ValueError("give base_model and policies, or a training section that produces them")
        names = [r.get("name") for r in self.rewards]
        if self.policies is not None and sorted(self.policies) != sorted(names):
            raise ValueError(f"policies must name exactly one policy per reward ({names}), "
                             f"got {list(self.policies)}")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    @property
    def reward_names(self) -> list[str]:
        return [r["name"] for r in self.rewards]


def load_run_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    path = Path(path)
    data = read_yaml_mapping(path, PipelineError)
    apply_overrides(data, list(overrides))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise PipelineError(describe_validation_error(exc, str(path))) from None
