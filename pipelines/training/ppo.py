"""PPO with trl 1.12's PPOTrainer (kept in ppo_trainer.py: trl 1.13 removed it), any project Reward as the reward.

PPO proper, as trl implements it (Ziegler et al. 2019; Huang et al., "The N implementation details of RLHF with
PPO"): one response per prompt sampled from the policy; a learned value model (θ0's weights with a new scalar head,
or `ppo.value_model`); per-token rewards −β·KL(π‖π0) (β fixed) plus the sequence's score at its last token; GAE
advantages; clipped policy and value losses; `ppo.num_ppo_epochs` passes over each rollout batch. The policy is
saved alone (`save_policy`), as a full checkpoint or a PEFT adapter.

trl takes the reward as a sequence-classification model and reads it through `get_reward`, which calls
`model.<base_model_prefix>(input_ids=..., attention_mask=..., output_hidden_states=True)` and
`model.score(hidden_states[-1])` and keeps the value at the last real token. `RewardModelView` is that interface over
a project `Reward` (rule-based, a reward model with its own tokenizer and input format, a callable): it decodes
prompt and response from the policy's token ids and returns the reward's score at every position. It knows where
the response starts because every prompt is left-padded to one width (the longest training prompt).
"""
from __future__ import annotations

import gc
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from lines.errors import LinesError
from lines.models import load_causal_lm, refuse_pickle_only, refuse_remote_code
from reward_models import Reward
from reward_models.text_format import policy_prompt_ids

from ..config.checks import check_ppo_prompts
from ..distributed import barrier, process_state
from .checkpoints import load_tokenizer
from .curves import training_curve
from .environment import model_dtypes
from .errors import TrainingError
from .jobs import PolicyJob, TrainOutcome
from .ppo_trainer import PPOConfig, PPOTrainer
from .rewards import to_maximise
from .trainer_args import lora_config, trainer_config


class _Scores(nn.Module):
    """The "backbone" trl calls: token ids in, the reward of each sequence broadcast over its positions out."""

    def __init__(self, reward: Reward, tokenizer, prompt_width: int, prompts_by_ids: dict[tuple[int, ...], str]):
        super().__init__()
        self.reward, self.tokenizer, self.prompt_width = reward, tokenizer, prompt_width
        self.prompts_by_ids = prompts_by_ids

    def texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[list[str], list[str]]:
        """Prompt and response texts of each row (prompt left-padded to `prompt_width`, response after it)."""
        prompts, responses = [], []
        for ids, mask in zip(input_ids.tolist(), attention_mask.bool().tolist()):
            prompt = tuple(t for t, keep in zip(ids[:self.prompt_width], mask[:self.prompt_width]) if keep)
            response = [t for t, keep in zip(ids[self.prompt_width:], mask[self.prompt_width:]) if keep]
            prompts.append(self.prompts_by_ids.get(prompt) or self.tokenizer.decode(prompt, skip_special_tokens=True))
            # As generation decodes a response (pipelines/generation): special tokens removed.
            responses.append(self.tokenizer.decode(response, skip_special_tokens=True))
        return prompts, responses

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_unused):
        prompts, responses = self.texts(input_ids, attention_mask)
        scores = torch.as_tensor(to_maximise(self.reward, self.reward.score(prompts, responses)), dtype=torch.float32,
                                 device=input_ids.device)
        return SimpleNamespace(hidden_states=(scores[:, None, None].expand(-1, input_ids.shape[1], 1),))


class RewardModelView(nn.Module):
    """A project Reward in the shape of the sequence-classification reward model trl's PPO reads."""

    base_model_prefix = "scores"

    def __init__(self, reward: Reward, tokenizer, prompt_width: int, prompts_by_ids: dict[tuple[int, ...], str]):
        super().__init__()
        self.scores = _Scores(reward, tokenizer, prompt_width, prompts_by_ids)
        self.score = nn.Identity()
        # What trl's DeepSpeed set-up reads of a model's config (no hidden size: no weights to shard).
        self.config = SimpleNamespace(hidden_size=None)


def ppo_args(job: PolicyJob) -> PPOConfig:
    settings = job.settings
    rollout = settings.per_device_batch_size * settings.gradient_accumulation_steps
    # trl counts training in episodes (responses): max_steps rollouts of every process.
    return trainer_config(PPOConfig, "ppo", settings, job.trainer_dir(), job.seed, job.where,
                          total_episodes=settings.max_steps * rollout * process_state().num_processes)


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
    from datasets import Dataset  # heavy: only when PPO trains
    from transformers import DataCollatorWithPadding, set_seed  # heavy: only when PPO trains

    settings = job.settings
    # Seeded before the value model's new head is initialised, so that it does not depend on what ran before.
    set_seed(settings.seed if settings.seed is not None else job.seed)  # the seed common_args gives the trainer
    check_ppo_prompts(settings, len(job.train_prompts), job.where)
    tokenizer = load_tokenizer(job.base_path, padding_side="left")  # generation continues from the right edge
    ids = [policy_prompt_ids(tokenizer, p.prompt) for p in job.train_prompts]
    width = max(len(row) for row in ids)
    prompts_by_ids = {tuple(row): p.prompt for row, p in zip(ids, job.train_prompts)}
    dataset = Dataset.from_dict({"input_ids": ids})

    dtypes = model_dtypes(settings, job.where)
    policy = load_causal_lm(job.base_path, "cpu", dtypes.load, "θ0")  # the trainer places it
    # LoRA: the reference is the policy with its adapter off; full fine-tuning: θ0 frozen in the run's precision.
    reference = None if settings.lora is not None else load_causal_lm(job.base_path, "cpu", dtypes.reference,
                                                                      "θ0 (reference)")
    trainer = PPOTrainer(
        args=ppo_args(job), processing_class=tokenizer, model=policy, ref_model=reference,
        reward_model=RewardModelView(job.reward, tokenizer, width, prompts_by_ids),
        value_model=load_value_model(job, tokenizer), train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer, padding="max_length", max_length=width),
        peft_config=lora_config(settings.lora) if settings.lora is not None else None)
    trainer.train()
    save_policy(trainer, out_dir)
    curve = training_curve(trainer.state.log_history)
    del trainer, policy, reference
    gc.collect()
    barrier()
    return TrainOutcome(curve, {"algorithm": "ppo", "prompt_width": width})


def save_policy(trainer, out_dir: Path) -> None:
    """The policy alone, in θ0's architecture (full) or as a PEFT adapter. trl trains one module holding the policy
    and the value model; its own save_model finds the policy inside it on one process but, under DDP, saves the
    whole wrapper, value model included."""
    accelerator = trainer.accelerator
    state = accelerator.get_state_dict(trainer.model)  # every process takes part: ZeRO-3 gathers its partitions
    if accelerator.is_main_process:
        prefix = "policy."
        policy_state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        accelerator.unwrap_model(trainer.model).policy.save_pretrained(str(out_dir), state_dict=policy_state)
        trainer.processing_class.save_pretrained(str(out_dir))
    barrier()
