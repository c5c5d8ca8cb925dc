"""PPO, the project's own (pipelines/training/ppo_math.py, ppo_rollout.py, ppo_loop.py), with any project Reward.

The RLHF form of PPO (Ziegler et al. 2019; Stiennon et al. 2020): one response per training prompt sampled from the
policy at `rl.temperature`; a value model (θ0's weights with a new scalar head, or `ppo.value_model`); per-token
rewards −β·KL(π‖π_ref) plus the reward's score at the response's last token, in the direction the reward is better;
GAE advantages, whitened; clipped policy and value losses; `ppo.num_ppo_epochs` passes over each rollout batch in
`ppo.num_mini_batches` minibatches. β is `beta`, fixed, or adapted toward `ppo.kl_target` with horizon
`ppo.kl_horizon`. The reference is θ0: the policy with its adapter off (LoRA) or a frozen copy (full fine-tuning).
The policy is saved alone (`save_policy`), as a full checkpoint or a PEFT adapter; the value model is not kept.
"""
from __future__ import annotations

import gc
import warnings
from pathlib import Path

import torch

from lines.errors import LinesError
from lines.models import load_causal_lm, refuse_pickle_only, refuse_remote_code
from reward_models.text_format import policy_prompt_ids

from ..config.checks import check_ppo_prompts
from ..distributed import barrier
from .checkpoints import load_tokenizer
from .curves import training_curve
from .environment import model_dtypes
from .errors import TrainingError
from .jobs import PolicyJob, TrainOutcome
from .trainer_args import lora_config, trainer_config

# Part of every PPO policy's hash input and manifest: a policy trained by another implementation (trl's PPOTrainer,
# which earlier versions of this stage ran) is not reused.
IMPLEMENTATION = "lines-soups ppo 1"


def ppo_args(job: PolicyJob):
    from .ppo_config import PPOConfig  # heavy: transformers

    return trainer_config(PPOConfig, "ppo", job.settings, job.trainer_dir(), job.seed, job.where)


def load_value_model(job: PolicyJob, tokenizer):
    """The critic: a sequence-classification model on the policy's tokens, trained in fp32 (it is fully trained,
    also when the policy is a LoRA adapter)."""
    from transformers import AutoModelForSequenceClassification  # heavy: only when PPO trains

    path = job.settings.ppo.value_model or str(job.base_path)
    if Path(path).is_dir():  # a hub id is fetched by transformers, which refuses its code without the flag
        try:
            refuse_remote_code(path, f"{job.where}: ppo.value_model")
            refuse_pickle_only(path, f"{job.where}: ppo.value_model")
        except LinesError as err:
            raise TrainingError(str(err)) from None
    with warnings.catch_warnings():  # from θ0 the scalar head is new by design
        warnings.simplefilter("ignore")
        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32,
                                                                       trust_remote_code=False, use_safetensors=True)
        except (OSError, ValueError) as err:
            raise TrainingError(f"{job.where}: ppo.value_model: cannot load '{path}' as a sequence classifier "
                                f"({str(err).splitlines()[0]}); give a checkpoint that shares θ0's tokenizer") from None
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise TrainingError(f"{job.where}: ppo.value_model '{path}' has {model.get_input_embeddings().num_embeddings} "
                            f"token embeddings but θ0's tokenizer has {len(tokenizer)} tokens; the value model reads "
                            "the policy's tokens, so it must share θ0's tokenizer")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def train_ppo(job: PolicyJob, out_dir: Path) -> TrainOutcome:
    from transformers import set_seed  # heavy: only when PPO trains

    from . import ppo_loop  # heavy (transformers, trl): only when PPO trains

    settings = job.settings
    # Seeded before the value model's new head is initialised, so that it does not depend on what ran before.
    set_seed(settings.seed if settings.seed is not None else job.seed)  # the seed common_args gives the trainer
    check_ppo_prompts(settings, len(job.train_prompts), job.where)
    tokenizer = load_tokenizer(job.base_path)
    prompts = [p.prompt for p in job.train_prompts]
    ids = [policy_prompt_ids(tokenizer, text) for text in prompts]

    dtypes = model_dtypes(settings, job.where)
    policy = load_causal_lm(job.base_path, "cpu", dtypes.load, "θ0")  # accelerate places it
    reference = None
    if settings.lora is not None:  # the reference is the policy with its adapter off
        from peft import get_peft_model  # heavy, and only for LoRA policies

        policy = get_peft_model(policy, lora_config(settings.lora))
    else:  # θ0 frozen in the run's precision
        reference = load_causal_lm(job.base_path, "cpu", dtypes.reference, "θ0 (reference)")
        reference.requires_grad_(False)
    args = ppo_args(job)
    result = ppo_loop.train(args, policy, load_value_model(job, tokenizer), reference, tokenizer, prompts, ids,
                            job.reward)
    save_policy(result, tokenizer, out_dir)
    curve = training_curve(result.log_history)
    details = {"algorithm": "ppo", "implementation": IMPLEMENTATION, "kl_coef_final": result.kl_coef}
    del result, policy, reference
    gc.collect()
    barrier()
    return TrainOutcome(curve, details)


def save_policy(result, tokenizer, out_dir: Path) -> None:
    """The policy alone, in θ0's architecture (full) or as a PEFT adapter: the value model trained beside it in one
    module is left out. Every process takes part in gathering the state (ZeRO partitions); the main one writes."""
    accelerator = result.accelerator
    state = accelerator.get_state_dict(result.model)
    if accelerator.is_main_process:
        prefix = "policy."
        policy_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        accelerator.unwrap_model(result.model).policy.save_pretrained(str(out_dir), state_dict=policy_state)
        tokenizer.save_pretrained(str(out_dir))
    barrier()
