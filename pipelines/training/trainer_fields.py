"""Every field of trl's config classes, reachable through a training block's `trainer:` mapping.

    training:
      learning_rate: 5.0e-6                       # the project's settings
      trainer: {report_to: tensorboard, adam_beta2: 0.95, lr_scheduler_kwargs: {min_lr: 1.0e-7}}

`trainer:` holds fields of the config class the stage builds (trl's SFTConfig for θ0's SFT, DPOConfig, RLOOConfig,
GRPOConfig; the project's own PPOConfig, pipelines/training/ppo_config.py), checked against that class before anything runs: the name (with the closest field suggested),
the value against the field's type, then the whole class built once with them.

Precedence: trl's defaults < the stage's defaults (DEFAULTS: what a `trainer:` value replaces) < `trainer:` < the
project's settings (owned_fields). The project's settings win because the rest of the project reads them from the
settings, not from the trainer: the policy's config hash (reuse on re-runs) and manifest, --check's plan and memory
estimate, the precision models load in, the stage's own directories and resume logic. A `trainer:` value for an owned
field would be silently overridden, so it is refused, naming the setting to use.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import typing
import warnings
from functools import lru_cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from lines.errors import first_line

from .errors import TrainingError

# Fields every trainer gets from a setting of its training block (the setting to use instead), or that the stage fixes
# (why).
FROM_SETTINGS = {
    "learning_rate": "learning_rate", "max_steps": "max_steps", "per_device_train_batch_size": "per_device_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "lr_scheduler_type": "lr_scheduler",
    "warmup_steps": "warmup_ratio", "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm",
    "logging_steps": "logging_steps", "gradient_checkpointing": "gradient_checkpointing", "seed": "seed",
    "data_seed": "seed", "bf16": "precision", "fp16": "precision",
}
FIXED = {
    "output_dir": "the trainer writes into runs/<run>/logs/<policy>, kept after training",
    "save_strategy": "the stage saves the finished policy itself and resumes whole policies",
    "use_cpu": "the machine decides: CPU where no CUDA device is visible",
}
# What each stage sets besides: from its settings, or fixed.
STAGE_SETTINGS = {
    "sft": {"max_length": "base.sft.max_length", "model_init_kwargs": "precision"},
    "dpo": {"beta": "beta", "loss_type": "dpo.loss_type", "loss_weights": "dpo.loss_weights",
            "max_length": "max_length", "model_init_kwargs": "precision"},
    "rloo": {"beta": "beta", "num_generations": "rl.num_generations", "max_completion_length": "rl.max_new_tokens",
             "temperature": "rl.temperature", "top_p": "rl.top_p", "num_iterations": "rl.num_iterations",
             "model_init_kwargs": "precision"},
    "ppo": {"kl_coef": "beta", "response_length": "rl.max_new_tokens", "temperature": "rl.temperature",
            **{field: f"ppo.{field}" for field in ("kl_target", "kl_horizon", "kl_estimator", "num_ppo_epochs",
                                                   "num_mini_batches", "cliprange", "cliprange_value", "vf_coef",
                                                   "gamma", "lam", "whiten_rewards", "missing_eos_penalty")}},
}
STAGE_SETTINGS["grpo"] = STAGE_SETTINGS["rloo"]
STAGE_FIXED = {"sft": {"dataset_text_field": "the stage builds the dataset with a 'text' column"}}
# The stage's defaults where trl's do not suit it: a `trainer:` value replaces them.
DEFAULTS_COMMON = {"report_to": [], "dataloader_num_workers": 0}
DEFAULTS = {"sft": {"packing": False}, "rloo": {"log_completions": False}, "grpo": {"log_completions": False}}
CLASSES = {"sft": "SFTConfig", "dpo": "DPOConfig", "rloo": "RLOOConfig", "grpo": "GRPOConfig", "ppo": "PPOConfig"}


def config_class(stage: str):
    """The config class of a stage ('sft' or an algorithm): trl's, except PPO's, the project's own (ppo_config.py)."""
    if stage == "ppo":
        from .ppo_config import PPOConfig  # heavy: transformers

        return PPOConfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(importlib.import_module("trl"), CLASSES[stage])


def owned_fields(stage: str) -> dict[str, str]:
    """Field -> why `trainer:` may not set it: 'set `SETTING` instead' or the reason the stage fixes it."""
    settings = {**FROM_SETTINGS, **STAGE_SETTINGS[stage]}
    fixed = {**FIXED, **STAGE_FIXED.get(stage, {})}
    return {**{k: f"from the setting `{v}`; set that instead" for k, v in settings.items()},
            **{k: f"itself ({v}); remove it" for k, v in fixed.items()}}


def stage_defaults(stage: str) -> dict[str, Any]:
    return {**DEFAULTS_COMMON, **DEFAULTS.get(stage, {})}


@lru_cache(maxsize=None)
def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def check_trainer_fields(stage: str, fields: dict, where: str, owned: dict | None = None) -> dict:
    """The `trainer:` fields of one training block, validated for `stage`; returns them with values converted to the
    fields' types. `owned`: the values the project sets beside them, for the class's checks across fields (without
    them trl's defaults stand in). Raises TrainingError naming `where` and the field."""
    if not fields:
        return {}
    cls = config_class(stage)
    import trl  # heavy: only when `trainer:` fields are given

    version = "pipelines/training/ppo_config.py" if stage == "ppo" else f"trl {trl.__version__}"
    owner = "the project's" if stage == "ppo" else "trl's"
    types = _field_types(cls)
    refused = owned_fields(stage)
    converted = {}
    for key, value in fields.items():
        field = f"field 'trainer.{key}'"
        if key in refused:
            raise TrainingError(f"{where}: {field}: the stage sets {key} {refused[key]}")
        if key not in types:
            close = difflib.get_close_matches(key, types, n=1)
            hint = f"did you mean {close[0]}?" if close else f"see {owner} {cls.__name__} for its fields"
            raise TrainingError(f"{where}: {field} is not a field of {owner} {cls.__name__} ({version}); {hint}")
        try:
            converted[key] = TypeAdapter(types[key]).validate_python(value)
        except ValidationError as exc:
            message = exc.errors()[0]["msg"]
            raise TrainingError(f"{where}: {field}: {message} ({owner} {cls.__name__} declares "
                                f"{_type_name(types[key])}); fix that value") from None
        except Exception:  # a type pydantic cannot check (a callable, a class): the class itself checks below
            converted[key] = value
    try:  # the class's own checks across fields (e.g. choices of optim, lr_scheduler_kwargs with the scheduler)
        with warnings.catch_warnings():  # deprecation notes belong to the run, not to a check of the config
            warnings.simplefilter("ignore")
            cls(**{"output_dir": "trainer-check", "use_cpu": True, "bf16": False, "fp16": False,
                   **stage_defaults(stage), **converted, **(owned or {})})
    except Exception as exc:  # trl and transformers raise ValueError, TypeError, ...: one line for the user
        raise TrainingError(f"{where}: field 'trainer': {owner} {cls.__name__} refuses these values: "
                            f"{first_line(exc)}") from None
    return converted


def report_to(fields: dict) -> list[str]:
    value = fields.get("report_to", [])
    names = [value] if isinstance(value, str) else list(value or [])
    return [n for n in names if n != "none"]


def check_integrations(fields: dict, where: str) -> None:
    """Each `report_to` integration is installed here (transformers would fail only when the trainer starts)."""
    from transformers.integrations import get_available_reporting_integrations  # heavy (transformers): on the machine check
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK  # heavy, as above

    available = get_available_reporting_integrations()
    for name in report_to(fields):
        if name == "all":
            continue
        if name not in INTEGRATION_TO_CALLBACK:
            raise TrainingError(f"{where}: field 'trainer.report_to': unknown integration '{name}'; use one of "
                                f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}")
        if name not in available:
            package = "tensorboard (in the pipeline extra)" if name == "tensorboard" else f"the package for {name}"
            raise TrainingError(f"{where}: field 'trainer.report_to': {name} is not installed here; install "
                                f"{package}, or remove it from report_to")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def trainer_kwargs(stage: str, fields: dict, owned: dict, where: str) -> dict:
    """The keyword arguments of trl's config class: the stage's defaults < `trainer:` fields < the project's own.

    `owned` are the values the stage computed from its settings; each must be declared above for `stage`, so that
    the check up front refuses the same fields a user could otherwise set twice."""
    undeclared = sorted(set(owned) - set(owned_fields(stage)))
    if undeclared:
        raise AssertionError(f"trainer field {undeclared[0]!r} is set by the {stage} stage but not declared in "
                             f"pipelines/training/trainer_fields.py; declare it there")
    return {**stage_defaults(stage), **check_trainer_fields(stage, fields, where, owned), **owned}
