"""Online RL with the reward as the signal: trl's RLOO and GRPO, with a KL penalty `beta` to θ0.

PPO runs only where the installed trl still ships PPOTrainer (removed in trl 1.13; the config check refuses
it earlier otherwise). trl's PPO needs the reward as a sequence-classification model, so it takes `hf` rewards.
"""
from __future__ import annotations

import copy
import gc
from pathlib import Path

from lines.models import load_causal_lm

from ..distributed import barrier
from .checkpoints import load_tokenizer
from .curves import training_curve
from .environment import model_dtypes, ppo_trainer_classes
from .errors import TrainingError
from .jobs import PolicyJob, TrainOutcome, trl_prompt
from .rewards import TrlRewardFunction
from .trainer_args import lora_config, trainer_config


def rl_args(job: PolicyJob, config_cls):
    settings = job.settings
    return trainer_config(config_cls, settings.algorithm, settings, job.trainer_dir(), job.seed, job.where,
                          model_init_kwargs={"dtype": model_dtypes(settings, job.where).load})


def train_online(job: PolicyJob, out_dir: Path) -> TrainOutcome:
    from datasets import Dataset

    if job.settings.algorithm == "ppo":
        return train_ppo(job, out_dir)
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    trainer_cls, config_cls = {"rloo": (RLOOTrainer, RLOOConfig), "grpo": (GRPOTrainer, GRPOConfig)}[
        job.settings.algorithm]
    tokenizer = load_tokenizer(job.base_path, padding_side="left")  # generation continues from the right edge
    dataset = Dataset.from_list([{"prompt": trl_prompt(tokenizer, p.prompt)} for p in job.train_prompts])
    lora = job.settings.lora
    trainer = trainer_cls(model=str(job.base_path), reward_funcs=[TrlRewardFunction(job.reward)],
                          args=rl_args(job, config_cls), train_dataset=dataset, processing_class=tokenizer,
                          peft_config=lora_config(lora) if lora is not None else None)
    return train_and_save(trainer, out_dir, {"algorithm": job.settings.algorithm})


def train_and_save(trainer, out_dir: Path, details: dict) -> TrainOutcome:
    """Train, save the policy, keep the curve, and free the trainer before the next policy starts."""
    trainer.train()
    trainer.save_model(str(out_dir))
    curve = training_curve(trainer.state.log_history)
    del trainer
    gc.collect()
    barrier()
    return TrainOutcome(curve, details)


def train_ppo(job: PolicyJob, out_dir: Path) -> TrainOutcome:  # pragma: no cover - needs trl < 1.13
    classes = ppo_trainer_classes()
    if classes is None:
        raise TrainingError(f"{job.where}: algorithm ppo needs trl's PPOTrainer (removed in trl 1.13); "
                            "use rloo or grpo")
    trainer_cls, config_cls = classes
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification

    from reward_models import HFRewardModel

    if not isinstance(job.reward, HFRewardModel):
        raise TrainingError(f"{job.where}: trl's PPO takes the reward as a sequence-classification model; reward "
                            f"'{job.reward.name}' is not an `hf` reward — use algorithm rloo or grpo for it")
    tokenizer = load_tokenizer(job.base_path, padding_side="left")
    settings, rl = job.settings, job.settings.rl
    ids = [tokenizer(p.prompt)["input_ids"] for p in job.train_prompts]
    dataset = Dataset.from_dict({"input_ids": ids})
    args = trainer_config(config_cls, "ppo", settings, job.trainer_dir(), job.seed, job.where)
    dtypes = model_dtypes(settings, job.where)
    policy = load_causal_lm(job.base_path, "cpu", dtypes.load, "θ0").train()  # the trainer places it
    ref = None if settings.lora is not None else load_causal_lm(job.base_path, "cpu", dtypes.reference,
                                                                "θ0 (reference)")
    reward_model = job.reward.model
    # The value head starts from the reward model unless another classifier is named (trl's PPO example does so).
    value_model = (AutoModelForSequenceClassification.from_pretrained(rl.value_model, num_labels=1)
                   if rl.value_model else copy.deepcopy(reward_model).float().train())
    trainer = trainer_cls(args=args, processing_class=tokenizer, model=policy, ref_model=ref, reward_model=reward_model,
                          value_model=value_model, train_dataset=dataset,
                          peft_config=lora_config(settings.lora) if settings.lora is not None else None)
    return train_and_save(trainer, out_dir, {"algorithm": "ppo"})
