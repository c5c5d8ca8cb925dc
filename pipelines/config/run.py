"""The main job's config: one typed model composed of the stage configs, checked whole before any work.

    run_name: demo
    output_dir: runs
    threads: 1                      # torch threads (null: torch's default)
    training: {...}                 # optional: the training stage's config without run_name/output_dir/seed
    base_model: PATH                # θ0, when not trained here
    policies: {positive: PATH, long: PATH}   # one per reward, keyed by reward name
    rewards: [{name: positive, type: vader}, {name: long, type: length}]   # the front's objectives
    metrics: [{name: kl, type: kl}, {name: perplexity, type: perplexity, texts: held_out.jsonl}]
    prompts: {path: prompts.jsonl, n_validation: 32, n_eval: 128}          # or {source: demo, ...}
    generation: {temperature: 0.7, max_new_tokens: 48, n: 1, seed: 0}
    sweep:
      points: 11                    # or `step: 0.25`, or an explicit `weights` list
      variants:
        - {name: soup, method: linear}
        - {name: lines, method: linear, lines: {alpha: auto, beta_grid: [0.25, 0.5, 1.0]}}
      uniform_control: {tuned: true, lambda_grid: null, matched: true}   # the controls (see UniformControl)
    forgetting: {gamma_grid: [0.0, 0.25, 0.5, 0.75, 1.0]}   # or null
    bootstrap: {samples: 1000, level: 0.95, seed: 0}
    study: {workers: 2, family: [[lines, soup]], alpha: 0.05, equivalence_margin: 0.02}   # with seeds: (StudyConfig)

A file may start from another with `extends: other.yaml` and state only what differs (overrides.py).
`load.load_run_config` validates the schema (every section typed: rewards and metrics against their reward type,
variants against their merge method, the training section as the training stage does), then the rules across
sections (unique objective names, weights valid for the number of rewards, one policy per reward, every local
path that will be read exists) and, with `checks.check_machine`, what this machine can do. A bad config is one
`PipelineError` line naming the file and the field, before anything is trained, generated or written.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import AfterValidator, Field, model_validator

from lines.method_registry import MethodName
from lines.safe_paths import check_path_component
from lines.schema import StrictModel
from reward_models import RewardSpecField

from ..sweep.variants import RESERVED_NAMES
from .generation import GenerationConfig
from .prompts import PromptsSection
from .training import TrainConfig, TrainingSection

# `texts:` placeholders of held-out-text metrics: the demo's held-out reviews, and its control-domain texts.
DEMO_HELD_OUT, DEMO_CONTROL = "demo", "demo-control"


# A run's or variant's name is one directory of the run: `..` would leave it.
DirName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$"), AfterValidator(check_path_component)]


class VariantLines(StrictModel):
    alpha: Union[float, Literal["auto"]] = "auto"
    beta: float | None = None
    beta_grid: list[float] | None = None
    head_depth: Literal["alpha", "last"] = "alpha"
    profile: Literal["increasing", "centered"] = "increasing"
    reverse: bool = False  # a control: the same λ values in decreasing depth order
    scope: Literal["depth", "head"] = "depth"  # a control: "head" scales only the final norm and the head, by λ(L−1)
    # A control takes the β chosen on validation prompts for another variant (no β of its own, no validation points),
    # so it differs from that variant in one thing only.
    beta_from: str | None = None

    @model_validator(mode="after")
    def _one_beta(self):
        if sum(x is not None for x in (self.beta, self.beta_grid, self.beta_from)) != 1:
            raise ValueError("give one of beta, beta_grid or beta_from")
        if self.beta_grid is not None and not self.beta_grid:
            raise ValueError("beta_grid is empty")
        return self

    def betas(self) -> list[float]:
        """The variant's own β candidates (none for a `beta_from` control)."""
        return [self.beta] if self.beta is not None else list(self.beta_grid or [])


class VariantConfig(StrictModel):
    name: DirName
    method: MethodName = "linear"  # a registered merge method; its parameters are checked by `check_run_config`
    parameters: dict = Field(default_factory=dict)
    lines: VariantLines | None = None
    matched: bool = True  # with uniform_control.matched: this LiNeS variant gets its norm-matched control


class UniformControl(StrictModel):
    """Controls that scale the whole merged update by one λ. `tuned`: a λ grid chosen on validation prompts like
    LiNeS' β (`lambda_grid`, or by default the mean block scale of each LiNeS candidate). `matched`: at every LiNeS
    point, the λ that gives the merged update the L1 norm of the LiNeS update there (same magnitude, no depth
    profile)."""

    tuned: bool = True
    lambda_grid: list[float] | None = None
    matched: bool = True


class SweepConfig(StrictModel):
    points: int | None = Field(11, ge=2)
    step: float | None = Field(None, gt=0, le=1)
    weights: list[list[float]] | None = None
    variants: list[VariantConfig] = Field(min_length=1)
    validation_points: int | None = Field(None, ge=2)  # a coarser grid to choose β / λ on (None: `points`)
    validation_step: float | None = Field(None, gt=0, le=1)
    uniform_control: UniformControl = Field(default_factory=UniformControl)
    selection: Literal["hypervolume"] = "hypervolume"
    # LoRA policies: "adapter" serves each point as its exact soup adapter (the base is never rewritten),
    # "dense" merges into the weights; "auto" = adapter when every policy is an adapter.
    lora_route: Literal["auto", "adapter", "dense"] = "auto"
    points_per_batch: int = Field(4, ge=1)  # points generated together in one call where the backend can

    @model_validator(mode="after")
    def _unique_names(self):
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        reserved = RESERVED_NAMES & set(names)
        if reserved:
            raise ValueError(f"'{sorted(reserved)[0]}' is a reserved variant name; rename that variant")
        return self


class ForgettingConfig(StrictModel):
    gamma_grid: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1)


class BootstrapConfig(StrictModel):
    samples: int = Field(1000, ge=10)
    level: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class ReportConfig(StrictModel):
    samples_shown: int = Field(3, ge=0)


class StudyConfig(StrictModel):
    """How a study over seeds (`seeds:`) runs and what its verdict rests on (pipelines/seed_inference.py).

    workers: seeds run at once, each in its own process with one torch thread (null: the machine's CPU count).
    family: the comparisons that make the verdict, each [front, other front] as the report names them
        (e.g. [lines_centered, soup], [lines, "matched[lines]"]); their sign-flip p-values are Holm-adjusted
        together. null: every comparison of the run.
    alpha: the family-wise error rate of the verdicts.
    equivalence_margin: hypervolume difference (in units of the reference box) within which two fronts count as
        equivalent when TOST shows it; otherwise "not shown", never "no different".
    power: the power the report's minimum detectable effect is stated at."""

    workers: int | None = Field(None, ge=1)
    family: list[Annotated[list[str], Field(min_length=2, max_length=2)]] | None = None
    alpha: float = Field(0.05, gt=0, lt=1)
    equivalence_margin: float = Field(0.02, gt=0)
    power: float = Field(0.8, gt=0, lt=1)


class RunConfig(StrictModel):
    run_name: DirName
    output_dir: str = "runs"
    seed: int = 0
    # Replicate the whole study over these seeds (θ0 and policies trained per seed, or, with checkpoints given,
    # the sweep's samples redrawn): runs/<name>/seed-<s>/ and a pooled runs/<name>/study/ report.
    seeds: list[int] | None = Field(None, min_length=2)
    # torch intra-op threads for the whole job (null: torch's default). Small models on a few CPU cores run
    # fastest, and far more steadily on a shared machine, with 1.
    threads: int | None = Field(None, ge=1)
    training: TrainingSection | None = None
    base_model: str | None = None
    policies: dict[str, str] | None = None
    rewards: list[RewardSpecField] = Field(min_length=1)
    metrics: list[RewardSpecField] = Field(default_factory=list)
    prompts: PromptsSection
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    sweep: SweepConfig
    forgetting: ForgettingConfig | None = Field(default_factory=ForgettingConfig)
    bootstrap: BootstrapConfig = Field(default_factory=BootstrapConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)

    # Where the config came from, for error messages; not part of the schema's data.
    source: str = Field("config", exclude=True)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    @property
    def reward_names(self) -> list[str]:
        return [spec.name for spec in self.rewards]

    @property
    def objectives(self) -> list:
        """Rewards (the front's objectives) then metrics (closeness to θ0): every score column, in order."""
        return list(self.rewards) + list(self.metrics)

    @cached_property
    def train_config(self) -> TrainConfig | None:
        """The training stage's config: the `training` section with the run's identity and, unless it names its
        own, the run's rewards."""
        if self.training is None:
            return None
        data = {**self.training.model_dump(exclude_none=True), "run_name": self.run_name,
                "output_dir": self.output_dir, "seed": self.seed, "source": f"{self.source}: training",
                "rewards": self.rewards if self.training.rewards is None else self.training.rewards}
        return TrainConfig.model_validate(data)

    def to_yaml(self) -> str:
        """The resolved config as written to runs/<name>/config.yaml; `load_run_config` reads it back unchanged."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
