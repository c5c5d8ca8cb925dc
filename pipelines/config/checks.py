"""Everything a config is checked for beyond its schema, before any work: the rules across sections, the files and
hub ids it names, and what this machine and its libraries can do.

    check_run_config     the main job's rules across sections (unique objective names, one policy per reward, weights
                         valid for the number of rewards, every variant's method and parameters, seeds, LoRA routes
                         and ranks) and, with check_paths, every local path it will read
    check_config         the training stage's: rewards, policies and MORL refer to each other rightly; every policy's
                         merged settings and trl `trainer:` fields; its paths and prompt file
    check_machine        this machine: the training stage's precision, integrations, batches and prompts per rollout
                         (check_environment), the generation backend and device, every reward's device and code
    check_machine_for_plan   `--check` without a GPU: check_machine on the config less its GPU-only settings

Each failure is one `PipelineError` (`TrainingError` for the training stage) line naming the file and the field.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import ValidationError

from lines.errors import LinesError, UserError
from lines.lora import adapter_type, is_adapter_dir, is_linear_lora, max_adapter_rank, read_adapter_config
from lines.models import first_missing_path, resolve_device
from lines.recipe import MergeSpec
from lines.safe_paths import check_run_dir
from lines.config_errors import describe_validation_error, first_error
from reward_models import RewardError, check_unique_names

from ..distributed import process_state
from ..errors import PipelineError
from ..generation.backend_choice import choose_backend
from ..generation.vllm_support import check_vllm_settings, installed_build
from ..prompts import prompt_split
from ..sweep.plan import validation_grid, validation_points, weight_grid
from ..training import environment  # (its functions looked up when called: tests stand in for a GPU there)
from ..training.batching import for_processes
from ..training.errors import TrainingError
from ..training.prompt_sources import training_prompts
from ..training.trainer_args import check_trainer
from ..training.trainer_fields import check_integrations
from .prompts import DemoPromptsConfig
from .run import DEMO_CONTROL, DEMO_HELD_OUT, RunConfig
from .training import PolicyTraining, TrainConfig, merged_training, policy_overrides, policy_settings


# ---------------------------------------------------------------------------------------------------------------
# The main job's config

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
        _check_run_paths(cfg, hub_ids)
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
    try:
        weight_grid(cfg)
        validation_grid(cfg)
    except ValueError as err:
        raise PipelineError(f"{cfg.source}: {err}") from None


def _check_validation_prompts(cfg: RunConfig) -> None:
    if validation_points(cfg) and cfg.prompts.n_validation == 0:
        raise PipelineError(f"{cfg.source}: prompts.n_validation is 0 but a variant has a beta_grid (or the uniform "
                            "control a lambda grid) to choose on validation prompts; set n_validation > 0")


def _check_variants(cfg: RunConfig) -> None:
    """Every variant's method and parameters, for this number of rewards, as the merge will see them."""
    n = len(cfg.rewards)
    by_name = {v.name: v for v in cfg.sweep.variants}
    for index, variant in enumerate(cfg.sweep.variants):
        lines = None
        if variant.lines is not None:
            source = variant.lines.beta_from
            if source is not None:
                other = by_name.get(source)
                if other is None or other.lines is None or other.lines.beta_from is not None or other is variant:
                    raise PipelineError(f"{cfg.source}: sweep.variants[{index}] ({variant.name}): lines.beta_from "
                                        f"'{source}' must name another LiNeS variant with its own beta or beta_grid; "
                                        f"use one of {[v.name for v in cfg.sweep.variants if v.lines and v.lines.betas()]}")
                if other.method != variant.method or other.parameters != variant.parameters:
                    raise PipelineError(f"{cfg.source}: sweep.variants[{index}] ({variant.name}): lines.beta_from "
                                        f"'{source}' has another merge method or parameters; a control differs from "
                                        "its variant in the LiNeS edit only")
            lines = {"alpha": variant.lines.alpha, "beta": (variant.lines.betas() or [1.0])[0],
                     "head_depth": variant.lines.head_depth, "reverse": variant.lines.reverse,
                     "scope": variant.lines.scope}
        try:
            MergeSpec(method=variant.method, weights=[1.0 / n] * n, parameters=variant.parameters, lines=lines)
        except ValidationError as exc:
            raise PipelineError(f"{cfg.source}: sweep.variants[{index}] ({variant.name}) with {n} rewards: "
                                f"{first_error(exc)}") from None


def _check_run_paths(cfg: RunConfig, hub_ids: str = "reachable") -> None:
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
    if cfg.training is None:
        return all(is_adapter_dir(cfg.policies[name]) for name in cfg.reward_names)
    train = _train_config(cfg)
    kinds = {}
    for entry, settings in policy_settings(train):
        if getattr(entry, "reward", None) in cfg.reward_names:
            kinds[entry.reward] = is_adapter_dir(entry.path) if settings is None else settings.lora is not None
    return all(kinds.values())


def _check_given_adapters(cfg: RunConfig) -> None:
    """A given LoRA policy's adapter_config.json (rank, alpha, target modules' form) is read before any work, so an
    absurd rank is found with the config, not when the sweep first merges it."""
    for name, path in (cfg.policies or {}).items():
        if is_adapter_dir(path):
            try:
                read_adapter_config(path)
            except LinesError as err:
                raise PipelineError(f"{cfg.source}: policies.{name}: {err}") from None


def _check_lora_route(cfg: RunConfig) -> None:
    if cfg.sweep.lora_route == "adapter":
        for name, path in (cfg.policies or {}).items():
            if is_adapter_dir(path) and not _is_linear_lora(cfg, name, path):
                raise PipelineError(f"{cfg.source}: sweep.lora_route is adapter but policies.{name} is a "
                                    f"{adapter_type(read_adapter_config(path))} adapter, whose update is not linear in "
                                    "its factors (peft merges it into θ0), so no soup of it is one adapter; use "
                                    "lora_route: dense or auto")
    if cfg.sweep.lora_route == "adapter" and not policies_are_adapters(cfg):
        raise PipelineError(f"{cfg.source}: sweep.lora_route is adapter but not every policy is a LoRA adapter; use "
                            "lora_route: dense or auto (or train the policies with training.training.lora)")


def _is_linear_lora(cfg: RunConfig, name: str, path: str) -> bool:
    try:
        return is_linear_lora(read_adapter_config(path))
    except LinesError as err:
        raise PipelineError(f"{cfg.source}: policies.{name}: {err}") from None


def policy_lora_ranks(cfg: RunConfig) -> dict[str, int | None]:
    """The LoRA rank of each reward's policy: from its training settings, or a given adapter's
    adapter_config.json (the largest of `r` and its rank_pattern); None for a full policy or one not readable here."""
    def adapter_rank(path: str | None) -> int | None:
        if not path or not is_adapter_dir(path):
            return None
        try:  # an adapter peft merges into θ0 is served densely: no rank to serve
            return max_adapter_rank(path) if is_linear_lora(read_adapter_config(path)) else None
        except LinesError as err:
            raise PipelineError(f"{cfg.source}: {err}") from None

    if cfg.training is None:
        return {name: adapter_rank(cfg.policies[name]) for name in cfg.reward_names}
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


# ---------------------------------------------------------------------------------------------------------------
# This machine

def check_machine(cfg: RunConfig) -> None:
    """What this machine and its libraries must offer: the training stage's precision and algorithms, the
    generation backend and device, every reward's device and code."""
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


# `--check` of a config written for GPUs (bf16 training, the vLLM backend, `cuda` devices) on a machine without
# one: `check_machine` refuses it, as a run here must be; checked before going to the GPUs, the GPU-only settings are
# set aside (listed, not checked) and everything else this machine can check is.
GPU_PRECISIONS = ("bf16", "fp16")


def gpu_only_settings(data: Any, where: str = "") -> list[str]:
    """Dotted fields of a dumped config that only a GPU machine can honour; set to `auto` in `data` in place."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            field = f"{where}.{key}" if where else str(key)
            if key == "precision" and value in GPU_PRECISIONS:
                found.append(f"{field}: {value}")
                data[key] = "auto"
            elif key == "device" and isinstance(value, str) and value.startswith("cuda"):
                found.append(f"{field}: {value}")
                data[key] = "auto"
            elif field == "generation.backend" and value == "vllm":
                found.append(f"{field}: {value}")
                data[key] = "auto"
            else:
                found += gpu_only_settings(value, field)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += gpu_only_settings(value, f"{where}.{index}")
    return found


def check_machine_for_plan(cfg: RunConfig) -> list[str]:
    """`check_machine` on this machine; without CUDA, on the config less its GPU-only settings, which are
    returned (to be listed as not checked here)."""
    if torch.cuda.is_available():
        check_machine(cfg)
        return []
    data = cfg.model_dump(mode="json")
    set_aside = gpu_only_settings(data)
    check_machine(RunConfig.model_validate({**data, "source": cfg.source}) if set_aside else cfg)
    return set_aside


# ---------------------------------------------------------------------------------------------------------------
# The training stage

def check_config(config: TrainConfig, check_paths: bool = True, hub_ids: str = "reachable") -> None:
    """Everything the schema alone cannot say, checked before any work: cross-references between rewards,
    policies and MORL; every policy's merged settings; (with `check_paths`) local paths that must exist, and hub
    ids (`hub_ids`: see `lines.models.first_missing_path`)."""
    source = config.source
    check_run_dir(config.run_dir, source, TrainingError)
    try:
        check_unique_names(config.rewards, f"{source}: rewards")
    except RewardError as err:
        raise TrainingError(str(err)) from None
    names = config.reward_names()
    # Metrics of the policy itself (KL to θ0, perplexity) describe a model, not a response: no training signal.
    metrics = {spec.name for spec in config.rewards if spec.is_metric}
    seen: set[str] = set()
    for index, entry in enumerate(config.policies):
        if entry.reward not in names:
            raise TrainingError(f"{source}: policies[{index}].reward '{entry.reward}' is not one of the rewards "
                                f"({', '.join(names)}); add it to `rewards` or fix the name")
        if entry.reward in seen:
            raise TrainingError(f"{source}: policies[{index}]: reward '{entry.reward}' has two policies; "
                                "keep one entry per reward")
        if entry.reward in metrics and entry.path is None:
            raise TrainingError(f"{source}: policies[{index}]: reward '{entry.reward}' is a metric of the policy "
                                "itself (KL, perplexity) and cannot be a training signal; train on another reward "
                                "and keep this one for evaluation")
        seen.add(entry.reward)
    if config.morl is not None:
        if any(n in metrics for n in config.morl.weights):
            raise TrainingError(f"{source}: morl.weights include a policy metric (KL, perplexity), which cannot be a "
                                "training signal; weight only rewards")
        unknown = [n for n in config.morl.weights if n not in names]
        if unknown:
            raise TrainingError(f"{source}: morl.weights names '{unknown[0]}', which is not one of the rewards "
                                f"({', '.join(names)})")
        if config.morl.name in names:
            raise TrainingError(f"{source}: morl.name '{config.morl.name}' is also a reward name; the policies "
                                "directory needs distinct names: rename the MORL policy")
    # Per-policy overrides and their trainer fields are validated now, not mid-run.
    for _, overrides, where in policy_overrides(config):
        if overrides is not None:
            settings = merged_training(config.training, overrides, where)
            check_trainer(settings.algorithm, settings, where)
    if config.base.sft is not None:
        check_trainer("sft", config.base.sft, f"{source}: base.sft.training")
    if check_paths:
        _check_training_paths(config, hub_ids)
        training_prompts(config.prompts, config.source)  # the prompt file's fields and sizes, before any training


def _check_training_paths(config: TrainConfig, hub_ids: str = "reachable") -> None:
    """Local files the stage will read exist. Model directories may also be hub ids (checked when fetched);
    data files are always local."""
    models: list[tuple[str, str | None]] = [("base.path", config.base.path)]
    files: list[tuple[str, str | None]] = []
    if config.base.sft is not None:
        sft = config.base.sft
        models += [("base.sft.init.path", sft.init.get("path")), ("base.sft.tokenizer.path", sft.tokenizer.path)]
        if sft.data.source == "file":
            files.append(("base.sft.data.path", sft.data.path))
    if config.prompts.source == "file":
        files.append(("prompts.path", config.prompts.path))
    models += [(f"policies[{i}].path", entry.path) for i, entry in enumerate(config.policies)]
    for (entry, settings) in policy_settings(config):
        if settings is not None and settings.dpo.pairs == "file":
            where = f"policies[{config.policies.index(entry)}]" if entry in config.policies else "morl"
            files.append((f"{where}: training.dpo.dataset", settings.dpo.dataset))
    for index, spec in enumerate(config.rewards):
        where = f"rewards[{index}] ({spec.name})"
        models += [(where, path) for path in spec.checkpoints()]
        files += [(where, path) for path in spec.content_files() if path not in spec.checkpoints()]
    missing = first_missing_path(models, files, hub_ids)
    if missing:
        raise TrainingError(f"{config.source}: {missing}")


def check_training(settings: PolicyTraining, where: str) -> None:
    environment.resolve_precision(settings.precision, where)
    check_integrations(settings.trainer, where)


def check_batches(config: TrainConfig, processes: int) -> None:
    """A global batch that does not divide among the launch's processes fails before anything is trained."""
    if config.base.sft is not None:
        for_processes(config.base.sft.training, processes, f"{config.source}: base.sft.training")
    for entry, settings in policy_settings(config):
        if settings is not None:
            name = getattr(entry, "reward", None) or getattr(entry, "name", "policy")
            for_processes(settings, processes, f"{config.source}: policy '{name}'")


def check_environment(config: TrainConfig) -> None:
    """Every machine-dependent check of the config, before anything runs."""
    if config.base.sft is not None:
        environment.resolve_precision(config.base.sft.training.precision, f"{config.source}: base.sft.training")
        check_integrations(config.base.sft.training.trainer, f"{config.source}: base.sft.training")
    for entry, settings in policy_settings(config):
        if settings is not None:
            name = getattr(entry, "reward", None) or getattr(entry, "name", "policy")
            check_training(settings, f"{config.source}: policy '{name}'")
            if settings.algorithm == "ppo":
                train, _ = training_prompts(config.prompts, config.source)
                check_ppo_prompts(settings, len(train), f"{config.source}: policy '{name}'")
    check_batches(config, environment.launch_processes())
    for index, spec in enumerate(config.rewards):
        try:
            spec.check_available()
        except UserError as err:
            raise TrainingError(f"{config.source}: rewards[{index}] ({spec.name}): {err}") from None


def check_ppo_prompts(settings: PolicyTraining, n_train: int, where: str) -> None:
    """A rollout batch is per_device_batch_size × gradient_accumulation_steps prompts per process, drawn without
    ragged batches: fewer training prompts than one batch over all processes would never fill one."""
    processes = process_state().num_processes
    needed = settings.per_device_batch_size * settings.gradient_accumulation_steps * processes
    if n_train < needed:
        raise TrainingError(f"{where}: PPO draws rollout batches of per_device_batch_size × "
                            f"gradient_accumulation_steps × {processes} process(es) = {needed} prompts but there are "
                            f"{n_train} training prompts; give more prompts (prompts.n_train) or smaller batches")
