"""The trl config of every trainer the stage builds, from one `Optimisation` block and its `trainer:` pass-through."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config.training import Optimisation, PolicyTraining, SFTSpec
from . import environment
from .trainer_fields import check_trainer_fields, trainer_kwargs


def settings_fields(opt: Optimisation) -> dict:
    """The trainer fields a training block's settings give every trl trainer config.

    Checkpoints are not saved mid-run (save_strategy="no"): the stage saves the final model itself and
    resumes at the granularity of whole policies. trl's own defaults that do not suit small models are
    overridden explicitly: gradient checkpointing (on in trl) and bf16 (on in trl, even on CPU; see common_args).
    """
    return dict(
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
        gradient_checkpointing=opt.gradient_checkpointing,
    )


def common_args(opt: Optimisation, output_dir: Path, seed: int, where: str) -> dict:
    """settings_fields plus what the run and this machine decide: directory, seed, device, mixed precision."""
    seed = opt.seed if opt.seed is not None else seed
    return dict(output_dir=str(output_dir), **settings_fields(opt), seed=seed, data_seed=seed,
                use_cpu=not torch.cuda.is_available(), **environment.resolve_precision(opt.precision, where))


def stage_fields(stage: str, block: PolicyTraining | SFTSpec) -> dict:
    """The trainer fields a stage takes from its own settings: `block` is the SFT spec for 'sft', else the policy's
    training settings (its algorithm is the stage)."""
    if stage == "sft":
        return dict(max_length=block.max_length, dataset_text_field="text")
    if stage == "dpo":
        return dict(beta=block.beta, loss_type=list(block.dpo.loss_type), loss_weights=block.dpo.loss_weights,
                    max_length=block.max_length)
    rl = block.rl
    if stage == "ppo":
        ppo = block.ppo
        return dict(kl_coef=block.beta, kl_target=ppo.kl_target, kl_horizon=ppo.kl_horizon,
                    response_length=rl.max_new_tokens, temperature=rl.temperature, kl_estimator=ppo.kl_estimator, num_ppo_epochs=ppo.num_ppo_epochs,
                    num_mini_batches=ppo.num_mini_batches, cliprange=ppo.cliprange,
                    cliprange_value=ppo.cliprange_value, vf_coef=ppo.vf_coef, gamma=ppo.gamma, lam=ppo.lam,
                    whiten_rewards=ppo.whiten_rewards, missing_eos_penalty=ppo.missing_eos_penalty)
    return dict(beta=block.beta, num_generations=rl.num_generations, max_completion_length=rl.max_new_tokens,
                temperature=rl.temperature, top_p=rl.top_p, num_iterations=rl.num_iterations)


def _optimisation(block: PolicyTraining | SFTSpec) -> Optimisation:
    return block.training if isinstance(block, SFTSpec) else block


def trainer_config(config_cls, stage: str, block: PolicyTraining | SFTSpec, output_dir: Path, seed: int, where: str,
                   **run_fields):
    """trl's config for a stage ('sft' or the algorithm): the stage's defaults, then the block's `trainer:` fields,
    then the project's own, which win (common_args, stage_fields and `run_fields`: what the run decides, e.g. the
    dtype models load in; see trainer_fields)."""
    opt = _optimisation(block)
    owned = {**common_args(opt, output_dir, seed, where), **stage_fields(stage, block), **run_fields}
    return config_cls(**trainer_kwargs(stage, opt.trainer, owned, where))


def check_trainer(stage: str, block: PolicyTraining | SFTSpec, where: str) -> None:
    """The block's `trainer:` fields checked up front, with the values the project will set beside them (this
    machine's device and precision aside: the environment check covers those)."""
    opt = _optimisation(block)
    if opt.trainer:
        owned = {"output_dir": "trainer-check", **settings_fields(opt), "seed": 0, "data_seed": 0, "use_cpu": True,
                 "bf16": False, "fp16": False, **stage_fields(stage, block)}
        check_trainer_fields(stage, opt.trainer, where, owned)


def lora_config(spec, task_type: str = "CAUSAL_LM"):
    from peft import LoraConfig  # heavy, and only for LoRA runs

    return LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                      target_modules=spec.target_modules, task_type=task_type)
