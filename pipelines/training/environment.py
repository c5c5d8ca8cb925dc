"""What this machine gives a training run: mixed precision (a GPU's), the dtypes models load in, the launch's
process count. (The checks of a config against this machine, before any work: pipelines/config/checks.py.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..config.training import Optimisation, Precision
from .errors import TrainingError


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


def launch_processes() -> int:
    """How many processes this launch runs (accelerate and torchrun set WORLD_SIZE; none means one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))
