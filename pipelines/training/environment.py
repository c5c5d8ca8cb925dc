"""Checks that depend on this machine and the installed libraries, run before any work starts.

The schema says what a config may ask for; these say whether *this* machine can do it: mixed precision
needs a GPU, `algorithm: ppo` enough training prompts for one rollout batch over every process.
"""
from __future__ import annotations

import os

from dataclasses import dataclass

import torch

from .config import Optimisation, PolicyTraining, Precision, TrainConfig, policy_settings
from lines.errors import UserError

from .errors import TrainingError
from .trainer_fields import check_integrations


def resolve_precision(precision: Precision, where: str) -> dict[str, bool]:
    """TrainingArguments' bf16/fp16 flags. Mixed precision is for GPUs only: on CPU an explicit request fails."""
    on_gpu = torch.cuda.is_available()
    if precision == "auto":
        if not on_gpu:
            return {"bf16": False, "fp16": False}
        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16}
    if precision in ("bf16", "fp16") and not on_gpu:
        raise TrainingError(f"{where}: precision {precision} needs a GPU and none is visible; use precision: auto "
                            "(fp32 on CPU) or fp32")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise TrainingError(f"{where}: this GPU does not support bf16; use precision: fp16 or auto")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


@dataclass(frozen=True)
class ModelDtypes:
    """The dtypes a trainer's models load in.

    load:      the model the trainer builds from θ0. Full fine-tuning keeps fp32 master weights (the optimizer updates
               them; the forward runs under the trainer's bf16/fp16 autocast). A LoRA base is frozen: it loads in
               the run's precision (bf16 on a GPU that has it: 16 GB for 8B parameters, not 32) and peft keeps the
               adapter weights, the only ones trained, in fp32 (trl keeps them in the base dtype under ZeRO-3).
    reference: a frozen reference copy, where one is loaded (DPO full fine-tuning): the run's precision.
    """

    load: torch.dtype
    reference: torch.dtype


HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


def model_dtypes(settings: Optimisation, where: str) -> ModelDtypes:
    """What `settings` (its precision on this machine, LoRA or full) asks the trainer to load; fp32 on CPU."""
    flags = resolve_precision(settings.precision, where)
    half = next((HALF[name] for name in ("bf16", "fp16") if flags[name]), torch.float32)
    return ModelDtypes(load=half if settings.lora is not None else torch.float32, reference=half)


def check_training(settings: PolicyTraining, where: str) -> None:
    resolve_precision(settings.precision, where)
    check_integrations(settings.trainer, where)


def launch_processes() -> int:
    """How many processes this launch runs (accelerate and torchrun set WORLD_SIZE; none means one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_batches(config: TrainConfig, processes: int) -> None:
    """A global batch that does not divide among the launch's processes fails before anything is trained."""
    from .batching import for_processes

    if config.base.sft is not None:
        for_processes(config.base.sft.training, processes, f"{config.source}: base.sft.training")
    for entry, settings in policy_settings(config):
        if settings is not None:
            name = getattr(entry, "reward", None) or getattr(entry, "name", "policy")
            for_processes(settings, processes, f"{config.source}: policy '{name}'")


def check_environment(config: TrainConfig) -> None:
    """Every machine-dependent check of the config, before anything runs."""
    if config.base.sft is not None:
        resolve_precision(config.base.sft.training.precision, f"{config.source}: base.sft.training")
        check_integrations(config.base.sft.training.trainer, f"{config.source}: base.sft.training")
    for entry, settings in policy_settings(config):
        if settings is not None:
            name = getattr(entry, "reward", None) or getattr(entry, "name", "policy")
            check_training(settings, f"{config.source}: policy '{name}'")
            if settings.algorithm == "ppo":
                from .ppo import check_ppo_prompts
                from .prompt_sources import training_prompts

                train, _ = training_prompts(config.prompts, config.source)
                check_ppo_prompts(settings, len(train), f"{config.source}: policy '{name}'")
    check_batches(config, launch_processes())
    for index, spec in enumerate(config.rewards):
        try:
            spec.check_available()
        except UserError as err:
            raise TrainingError(f"{config.source}: rewards[{index}] ({spec.name}): {err}") from None
