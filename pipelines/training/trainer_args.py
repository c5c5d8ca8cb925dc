"""TrainingArguments fields shared by every trl trainer the stage builds, from one `Optimisation` block."""
from __future__ import annotations

from pathlib import Path

import torch

from . import environment
from .config import Optimisation


def common_args(opt: Optimisation, output_dir: Path, seed: int, where: str) -> dict:
    """Keyword arguments for SFTConfig / DPOConfig / RLOOConfig / GRPOConfig.

    Checkpoints are not saved mid-run (save_strategy="no"): the stage saves the final model itself and
    resumes at the granularity of whole policies. trl's own defaults that do not suit small models are
    overridden explicitly: gradient checkpointing (on in trl) and bf16 (on in trl, even on CPU).
    """
    seed = opt.seed if opt.seed is not None else seed
    return dict(
        output_dir=str(output_dir),
        learning_rate=opt.learning_rate,
        max_steps=opt.max_steps,
        per_device_train_batch_size=opt.per_device_batch_size,
        gradient_accumulation_steps=opt.gradient_accumulation_steps,
        lr_scheduler_type=opt.lr_scheduler,
        warmup_steps=opt.warmup_ratio,  # a float below 1 is a ratio of max_steps in transformers 5
        weight_decay=opt.weight_decay,
        max_grad_norm=opt.max_grad_norm,
        logging_steps=opt.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=opt.gradient_checkpointing,
        dataloader_num_workers=0,
        **environment.resolve_precision(opt.precision, where),
    )


def lora_config(spec, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig

    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, task_type=task_type)
