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

A file may start from another with `extends: other.yaml` and state only what differs (pipelines/overrides.py).
`load_run_config` validates the schema (every section typed: rewards and metrics against their reward type,
variants against their merge method, the training section as the training stage does), then the rules across
sections (unique objective names, weights valid for the number of rewards, one policy per reward, every local
path that will be read exists) and, with `check_machine`, what this machine can do. A bad config is one
`PipelineError` line naming the file and the field, before anything is trained, generated or written.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from lines.config_errors import describe_validation_error, first_error
from lines.method_registry import MethodName
from lines.models import first_missing_path
from lines.recipe import MergeSpec
from lines.safe_paths import check_path_component, check_run_dir
from reward_models import RewardSpecField

from .errors import PipelineError
from .generation.config import GenerationConfig
from .overrides import apply_overrides, read_config
from .prompts import DemoPromptsConfig, PromptsSection
from .training.config import TrainConfig, TrainingSection, check_config

# `texts:` placeholders of held-out-text metrics: the demo's held-out reviews, and its control-domain texts.
DEMO_HELD_OUT, DEMO_CONTROL = "demo", "demo-control"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A run's or variant's name is one directory of the run: `..` would leave it.
DirName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$"), AfterValidator(check_path_component)]


class VariantLines(_Strict):
    alpha: Union[float, Literal["auto"]] = "auto"
    beta: float | None = None
    beta_grid: list[float] | None = None
    head_depth: Literal["alpha", "last"] = "alpha"
    profile: Literal["increasing", "centered"] = "increasing"

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
    name: DirName
    method: MethodName = "linear"  # a registered merge method; its parameters are checked by `check_run_config`
    parameters: dict = Field(default_factory=dict)
    lines: VariantLines | None = None


class UniformControl(_Strict):
    """Controls that scale the whole merged update by one λ. `tuned`: a λ grid chosen on validation prompts like
    LiNeS' β (`lambda_grid`, or by default the mean block scale of each LiNeS candidate). `matched`: at every LiNeS
    point, the λ that gives the merged update the L1 norm of the LiNeS update there (same magnitude, no depth
    profile)."""

    tuned: bool = True
    lambda_grid: list[float] | None = None
    matched: bool = True


class SweepConfig(_Strict):
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
        reserved = {"uniform", "matched", "base", "policy", "reference", "forget_lines", "forget_uniform",
                    "forget_matched"} & set(names)
        if reserved:
            raise ValueError(f"'{sorted(reserved)[0]}' is a reserved variant name; rename that variant")
        return self


class ForgettingConfig(_Strict):
    gamma_grid: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1)


class BootstrapConfig(_Strict):
    samples: int = Field(1000, ge=10)
    level: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class ReportConfig(_Strict):
    samples_shown: int = Field(3, ge=0)


class RunConfig(_Strict):
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

    def for_seed(self, seed: int) -> "RunConfig":
        """The config of one seed of a replicated study: runs/<name>/seed-<s>/, training and sampling seeded by s."""
        data = {**self.model_dump(mode="json"), "seeds": None, "seed": seed, "run_name": f"seed-{seed}",
                "output_dir": str(self.run_dir), "generation": {**self.generation.model_dump(mode="json"), "seed": seed}}
        return parse_run_config(data, self.source, check_paths=False)

    def to_yaml(self) -> str:
        """The resolved config as written to runs/<name>/config.yaml; `load_run_config` reads it back unchanged."""
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def load_run_config(path: str | Path, overrides: list[str] = (), check_paths: bool = True,
                    hub_ids: str = "reachable") -> RunConfig:
    """The run config of a YAML file with `--set` overrides, validated as a whole (see the module docstring).
    `check_paths=False` skips the existence of local files (for a config meant for another machine);
    `hub_ids="well_formed"` accepts a well-formed hub id that is not in the hub cache (fetched where it runs)."""
    path = Path(path)
    data = read_config(path, PipelineError)  # with its `extends:` chain
    apply_overrides(data, list(overrides))
    return parse_run_config(data, str(path), check_paths, hub_ids)


def parse_run_config(data: dict, source: str = "config", check_paths: bool = True,
                     hub_ids: str = "reachable") -> RunConfig:
    try:
        cfg = RunConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise PipelineError(describe_validation_error(exc, source)) from None
    check_run_config(cfg, check_paths, hub_ids)
    return cfg


def check_run_config(cfg: RunConfig, check_paths: bool = True, hub_ids: str = "reachable") -> None:
    """The rules across sections; each failure is one line naming the file and the field."""
    source = cfg.source
    _check_objective_names(cfg)
    names = cfg.reward_names
    if cfg.training is None and (cfg.base_model is None or cfg.policies is None):
        raise PipelineError(f"{source}: give base_model and policies, or a training section that produces them")
    if cfg.training is not None and (cfg.base_model is not None or cfg.policies is not None):
        raise PipelineError(f"{source}: give base_model and policies, or a training section, not both (a given "
                            "θ0 or policy goes in training.base.path / training.policies[].path)")
    if cfg.policies is not None and sorted(cfg.policies) != sorted(names):
        raise PipelineError(f"{source}: policies must name exactly one policy per reward ({', '.join(names)}), "
                            f"got {', '.join(cfg.policies) or 'none'}")
    check_run_dir(cfg.run_dir, source, PipelineError)
    _check_seeds(cfg)
    _check_weights(cfg)
    _check_variants(cfg)
    _check_validation_prompts(cfg)
    if cfg.training is not None:
        train = _train_config(cfg)
        check_config(train, check_paths, hub_ids)
        missing = [name for name in names if name not in {p.reward for p in train.policies}]
        if missing:
            raise PipelineError(f"{source}: training.policies has no policy for reward '{missing[0]}'; add "
                                f"{{reward: {missing[0]}}}")
    if check_paths:
        _check_paths(cfg, hub_ids)
        _check_prompts(cfg)
        _check_given_adapters(cfg)
        _check_lora_route(cfg)
        _check_soup_rank(cfg)


def _check_seeds(cfg: RunConfig) -> None:
    if not cfg.seeds:
        return
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise PipelineError(f"{cfg.source}: seeds {cfg.seeds} repeat a seed; give each seed once")
    if cfg.training is not None:
        fixed = ["training.training.seed"] if cfg.training.training.seed is not None else []
        fixed += [f"training.policies[{i}].training.seed" for i, p in enumerate(cfg.training.policies)
                  if "seed" in p.training]
        fixed += ["training.base.sft.training.seed"] if cfg.training.base.sft and \
            cfg.training.base.sft.training.seed is not None else []
        if fixed:
            raise PipelineError(f"{cfg.source}: seeds replicate every stage, but {fixed[0]} fixes a stage's seed; "
                                "remove it (each seed of the study seeds every stage)")


def _check_objective_names(cfg: RunConfig) -> None:
    """Every reward and metric has its own score column, keyed by name."""
    seen: dict[str, str] = {}
    for section, specs in (("rewards", cfg.rewards), ("metrics", cfg.metrics)):
        for index, spec in enumerate(specs):
            where = f"{section}[{index}]"
            if spec.name in seen:
                raise PipelineError(f"{cfg.source}: {where}: the name '{spec.name}' is already used by {seen[spec.name]}; "
                                    "each reward and metric needs its own name (it keys a score column)")
            seen[spec.name] = where


def _train_config(cfg: RunConfig) -> TrainConfig:
    try:
        return cfg.train_config
    except ValidationError as exc:
        raise PipelineError(describe_validation_error(exc, f"{cfg.source}: training")) from None


def _check_weights(cfg: RunConfig) -> None:
    from .sweep.plan import validation_grid, weight_grid

    try:
        weight_grid(cfg)
        validation_grid(cfg)
    except ValueError as err:
        raise PipelineError(f"{cfg.source}: {err}") from None


def _check_validation_prompts(cfg: RunConfig) -> None:
    from .sweep.plan import validation_points

    if validation_points(cfg) and cfg.prompts.n_validation == 0:
        raise PipelineError(f"{cfg.source}: prompts.n_validation is 0 but a variant has a beta_grid (or the uniform "
                            "control a lambda grid) to choose on validation prompts; set n_validation > 0")


def _check_variants(cfg: RunConfig) -> None:
    """Every variant's method and parameters, for this number of rewards, as the merge will see them."""
    n = len(cfg.rewards)
    for index, variant in enumerate(cfg.sweep.variants):
        lines = None
        if variant.lines is not None:
            lines = {"alpha": variant.lines.alpha, "beta": variant.lines.betas()[0],
                     "head_depth": variant.lines.head_depth}
        try:
            MergeSpec(method=variant.method, weights=[1.0 / n] * n, parameters=variant.parameters, lines=lines)
        except ValidationError as exc:
            raise PipelineError(f"{cfg.source}: sweep.variants[{index}] ({variant.name}) with {n} rewards: "
                                f"{first_error(exc)}") from None


def _check_paths(cfg: RunConfig, hub_ids: str = "reachable") -> None:
    """Local paths the job will read exist. Checkpoints may also be hub ids (checked when fetched); data files
    (prompts, texts, reference files) are always local."""
    models = [("base_model", cfg.base_model)] + [(f"policies.{k}", v) for k, v in (cfg.policies or {}).items()]
    files = []
    if not isinstance(cfg.prompts, DemoPromptsConfig):
        files.append(("prompts.path", cfg.prompts.path))
    for section, specs in (("rewards", cfg.rewards), ("metrics", cfg.metrics)):
        for index, spec in enumerate(specs):
            paths = spec.content_files()
            if getattr(spec, "texts", None) in (DEMO_HELD_OUT, DEMO_CONTROL):
                paths = [f for f in paths if f != spec.texts]  # written by the job under the run directory
            where = f"{section}[{index}] ({spec.name})"
            models += [(where, path) for path in spec.checkpoints()]
            files += [(where, f) for f in paths if f not in spec.checkpoints()]
    missing = first_missing_path(models, files, hub_ids)
    if missing:
        raise PipelineError(f"{cfg.source}: {missing}")


def _check_prompts(cfg: RunConfig) -> None:
    """The prompt sets can be made (a file's field mapping, the sizes asked for). A hub dataset is read when the
    sweep starts, not here: that may be a download."""
    from .prompts import prompt_split

    if isinstance(cfg.prompts, DemoPromptsConfig) or cfg.prompts.path is not None:
        try:
            prompt_split(cfg.prompts)
        except PipelineError as err:
            raise PipelineError(f"{cfg.source}: prompts: {err}") from None
        except ValueError as err:  # more of the demo's prompts than it has
            raise PipelineError(f"{cfg.source}: prompts: {err}; lower prompts.n_validation / prompts.n_eval") \
                from None


def policies_are_adapters(cfg: RunConfig) -> bool:
    """Whether every policy the sweep merges is a LoRA adapter (trained with `lora`, or given as one)."""
    from lines.lora import is_adapter_dir

    if cfg.training is None:
        return all(is_adapter_dir(cfg.policies[name]) for name in cfg.reward_names)
    from .training.config import policy_settings

    train = _train_config(cfg)
    kinds = {}
    for entry, settings in policy_settings(train):
        if getattr(entry, "reward", None) in cfg.reward_names:
            kinds[entry.reward] = is_adapter_dir(entry.path) if settings is None else settings.lora is not None
    return all(kinds.values())


def _check_given_adapters(cfg: RunConfig) -> None:
    """A given LoRA policy's adapter_config.json (rank, alpha, target modules' form) is read before any work, so an
    absurd rank is found with the config, not when the sweep first merges it."""
    from lines.errors import LinesError
    from lines.lora import is_adapter_dir, read_adapter_config

    for name, path in (cfg.policies or {}).items():
        if is_adapter_dir(path):
            try:
                read_adapter_config(path)
            except LinesError as err:
                raise PipelineError(f"{cfg.source}: policies.{name}: {err}") from None


def _check_lora_route(cfg: RunConfig) -> None:
    if cfg.sweep.lora_route == "adapter" and not policies_are_adapters(cfg):
        raise PipelineError(f"{cfg.source}: sweep.lora_route is adapter but not every policy is a LoRA adapter; use "
                            "lora_route: dense or auto (or train the policies with training.training.lora)")


def policy_lora_ranks(cfg: RunConfig) -> dict[str, int | None]:
    """The LoRA rank of each reward's policy: from its training settings, or a given adapter's
    adapter_config.json (the largest of `r` and its rank_pattern); None for a full policy or one not readable here."""
    from lines.errors import LinesError
    from lines.lora import is_adapter_dir, max_adapter_rank

    def adapter_rank(path: str | None) -> int | None:
        if not path or not is_adapter_dir(path):
            return None
        try:
            return max_adapter_rank(path)
        except LinesError as err:
            raise PipelineError(f"{cfg.source}: {err}") from None

    if cfg.training is None:
        return {name: adapter_rank(cfg.policies[name]) for name in cfg.reward_names}
    from .training.config import policy_settings

    ranks = {}
    for entry, settings in policy_settings(_train_config(cfg)):
        if getattr(entry, "reward", None) in cfg.reward_names:
            ranks[entry.reward] = (adapter_rank(entry.path) if settings is None
                                   else settings.lora.r if settings.lora is not None else None)
    return ranks


def _check_soup_rank(cfg: RunConfig) -> None:
    """A vLLM engine that serves adapters (`enable_lora`) serves a soup of LoRA policies as one adapter of rank Σ r_i
    (at most: per module, the ranks of the policies that adapt it); above `max_lora_rank` every point would be
    merged densely instead, which the config did not ask for."""
    generation = cfg.generation
    if generation.backend == "transformers" or not generation.vllm.enable_lora or cfg.sweep.lora_route == "dense":
        return
    ranks = policy_lora_ranks(cfg)
    if not ranks or any(rank is None for rank in ranks.values()):
        return
    total = sum(ranks.values())
    if total > generation.vllm.max_lora_rank:
        parts = " + ".join(f"{rank} ({name})" for name, rank in ranks.items())
        raise PipelineError(f"{cfg.source}: generation.vllm.max_lora_rank {generation.vllm.max_lora_rank} is below the "
                            f"rank of the soup adapters, {total} = {parts}; set max_lora_rank to {total} or more, "
                            "lower the policies' LoRA rank, or set sweep.lora_route: dense")


def check_machine(cfg: RunConfig) -> None:
    """What this machine and its libraries must offer: the training stage's precision and algorithms, the
    generation backend and device, every reward's device and code."""
    from lines.errors import UserError
    from lines.models import resolve_device

    from .generation.backend_choice import choose_backend
    from .training.environment import check_environment

    if cfg.training is not None:
        check_environment(_train_config(cfg))
    generation = cfg.generation
    try:
        backend, _ = choose_backend(generation.backend)
    except UserError as err:
        raise PipelineError(f"{cfg.source}: {err}") from None
    try:
        resolve_device(generation.device)
    except UserError as err:
        raise PipelineError(f"{cfg.source}: generation.device: {err}") from None
    if backend == "vllm":
        from .generation.vllm_support import check_vllm_settings, installed_build

        try:
            check_vllm_settings(generation, installed_build())
        except UserError as err:
            raise PipelineError(f"{cfg.source}: {err}") from None
    if backend == "vllm" and cfg.sweep.lora_route == "adapter" and not generation.vllm.enable_lora:
        raise PipelineError(f"{cfg.source}: sweep.lora_route is adapter but the vllm engine serves no adapters; set "
                            "generation.vllm.enable_lora: true, or lora_route: dense")
    for section, specs in (("rewards", cfg.rewards), ("metrics", cfg.metrics)):
        for index, spec in enumerate(specs):
            try:
                spec.check_available()
            except UserError as err:
                raise PipelineError(f"{cfg.source}: {section}[{index}] ({spec.name}): {err}") from None
