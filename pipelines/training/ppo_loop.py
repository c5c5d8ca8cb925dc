"""PPO's training loop: rollout, advantages, then epochs × minibatches of clipped updates, on accelerate.

Each of `max_steps` steps: every process samples one response for each of its per_device_batch_size ×
gradient_accumulation_steps prompts (ppo_rollout.py); per-token rewards −β·KL plus the score at the last token; GAE;
advantages whitened; then `num_ppo_epochs` passes over the rollout in `num_mini_batches` shuffled minibatches, one
optimiser step each (micro-batches of at most per_device_batch_size accumulated). β is fixed or follows the adaptive
controller toward `kl_target` (ppo_math.KLController), fed the mean KL per response over all processes.

The policy and the value model are one module (`PolicyAndValue`) so that accelerate prepares them once: DDP on
several processes, or one DeepSpeed engine (ZeRO-2 on CPU in the tests). Statistics are logged at every
`logging_steps`-th step to `report_to` integrations and the progress bar, and kept in the state's log history.

The module loads transformers and trl: the stage imports it only when a PPO policy trains (ppo.py).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import nn
from accelerate import Accelerator
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, get_scheduler, set_seed
from transformers.integrations import get_reporting_integration_callbacks
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback, PrinterCallback, ProgressCallback
from trl.models.utils import prepare_deepspeed, unwrap_model_for_generation
from trl.trainer.utils import disable_dropout_in_model

from reward_models import Reward

from ..stage_times import timed
from . import ppo_math
from .ppo_config import PPOConfig
from .ppo_rollout import Rollout, collect, response_logits, token_logprobs


class PolicyAndValue(nn.Module):
    """The trained modules: the policy (a causal LM, or a PEFT model on one) and the value model (a
    sequence-classification model read at every position through its backbone and scalar `score` head)."""

    def __init__(self, policy: nn.Module, value_model: nn.Module):
        super().__init__()
        self.policy, self.value_model = policy, value_model
        self.config = policy.config  # what DeepSpeed's automatic bucket sizes read

    # Generation turns gradient checkpointing off and back on (trl's unwrap_model_for_generation): both models.
    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.policy, "is_gradient_checkpointing", False))

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        for module in (self.policy, self.value_model):
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self):
        for module in (self.policy, self.value_model):
            module.gradient_checkpointing_disable()

    def values(self, input_ids, attention_mask, position_ids) -> torch.Tensor:
        backbone = getattr(self.value_model, self.value_model.base_model_prefix)
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          use_cache=False).last_hidden_state
        return self.value_model.score(hidden).squeeze(-1)

    def forward(self, input_ids, attention_mask, position_ids):
        logits = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False).logits
        return logits, self.values(input_ids, attention_mask, position_ids)


@dataclass
class Batches:
    rollout: int    # responses per process per step
    minibatch: int  # responses per optimiser step (per process)
    micro: int      # responses per forward/backward pass

    @property
    def accumulation(self) -> int:
        return self.minibatch // self.micro


def batch_sizes(args: PPOConfig) -> Batches:
    rollout = args.per_device_train_batch_size * args.gradient_accumulation_steps
    if rollout % args.num_mini_batches:
        raise ValueError(f"num_mini_batches {args.num_mini_batches} does not divide the rollout batch {rollout}")
    minibatch = rollout // args.num_mini_batches
    micro = min(args.per_device_train_batch_size, minibatch)
    if minibatch % micro:
        raise ValueError(f"a minibatch of {minibatch} is not whole micro-batches of {micro}")
    return Batches(rollout, minibatch, micro)


def prompt_batches(n_prompts: int, args: PPOConfig, processes: int, rank: int, rollout: int):
    """Indices of this process's prompts, step after step: one shuffled pass over the prompts after another (the
    same order on every process, each taking its own slice of every global batch); a remainder smaller than a
    global batch waits for the next pass."""
    generator = torch.Generator().manual_seed(args.seed)
    global_batch = rollout * processes
    while True:
        order = torch.randperm(n_prompts, generator=generator).tolist()
        for start in range(0, n_prompts - global_batch + 1, global_batch):
            yield order[start + rank * rollout:start + (rank + 1) * rollout]


@dataclass
class Advantages:
    kl: torch.Tensor          # [B, T] per-token KL
    rewards: torch.Tensor     # [B, T]
    advantages: torch.Tensor  # [B, T] whitened
    returns: torch.Tensor     # [B, T]


def advantages_of(rollout: Rollout, args: PPOConfig, kl_coef: float) -> Advantages:
    kl = ppo_math.kl_per_token(rollout.logprobs, rollout.ref_logprobs, args.kl_estimator) * rollout.mask
    rewards = ppo_math.token_rewards(rollout.scores, kl, rollout.mask, kl_coef)
    if args.whiten_rewards:
        rewards = ppo_math.masked_whiten(rewards, rollout.mask, shift_mean=False)
    advantages, returns = ppo_math.gae(rewards, rollout.values, rollout.mask, args.gamma, args.lam)
    return Advantages(kl, rewards, ppo_math.masked_whiten(advantages, rollout.mask), returns)


def build_optimizer(args: PPOConfig, model: nn.Module, steps: int):
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optimizer_cls([{"params": params, "weight_decay": args.weight_decay}], **kwargs)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.get_warmup_steps(steps),
                              num_training_steps=steps, scheduler_specific_kwargs=args.lr_scheduler_kwargs or {})
    return optimizer, scheduler


def make_accelerator(args: PPOConfig, batches: Batches):
    # The launcher's settings (DDP, DeepSpeed, CPU) come from its environment; the run's precision from the args.
    precision = {"mixed_precision": "bf16"} if args.bf16 else {"mixed_precision": "fp16"} if args.fp16 else {}
    accelerator = Accelerator(gradient_accumulation_steps=batches.accumulation, **precision)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None:  # what DeepSpeed's "auto" entries mean here (no dataloader tells accelerate)
        for key, value in {"train_micro_batch_size_per_gpu": batches.micro,
                           "gradient_clipping": args.max_grad_norm}.items():
            if plugin.is_auto(key):
                plugin.deepspeed_config[key] = value
    return accelerator


class BarStatistics(TrainerCallback):
    """Puts the readings PPO practitioners watch on the progress bar beside the step count."""

    KEYS = {"objective/scores": "reward", "objective/kl": "kl", "objective/kl_coef": "β",
            "policy/entropy_avg": "entropy", "policy/clipfrac_avg": "clip", "val/explained_variance": "ev"}

    def __init__(self, progress):
        self.progress = progress

    def on_log(self, args, state, control, logs=None, **kwargs):
        bar = getattr(self.progress, "training_bar", None)
        if bar is not None and logs:
            bar.set_postfix({short: f"{logs[key]:.3g}" for key, short in self.KEYS.items() if key in logs},
                            refresh=False)


@dataclass
class PPOResult:
    model: nn.Module          # the prepared PolicyAndValue
    accelerator: object
    log_history: list[dict]
    kl_coef: float            # β at the end


def train(args: PPOConfig, policy: nn.Module, value_model: nn.Module, reference: nn.Module | None, tokenizer,
          prompts: list[str], prompt_ids: list[list[int]], reward: Reward) -> PPOResult:
    """PPO on `prompts` (texts and their token ids). `reference` None: the policy is a PEFT model whose base, with
    the adapter off, is the reference."""
    set_seed(args.seed)
    batches = batch_sizes(args)
    accelerator = make_accelerator(args, batches)
    for module in (policy, value_model, reference):
        if module is not None:
            disable_dropout_in_model(module)
    model = PolicyAndValue(policy, value_model)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(args.gradient_checkpointing_kwargs)
    optimizer, scheduler = build_optimizer(args, model, args.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    if reference is not None:
        reference = (prepare_deepspeed(reference, accelerator) if accelerator.state.deepspeed_plugin is not None
                     else reference.to(accelerator.device).eval())
    processes, rank = accelerator.num_processes, accelerator.process_index
    torch.manual_seed(args.seed + 100003 * rank)  # each process samples its own responses
    shuffle = torch.Generator().manual_seed(args.seed + 100003 * rank)
    stream = prompt_batches(len(prompts), args, processes, rank, batches.rollout)
    controller = ppo_math.KLController(args.kl_coef, args.kl_target, args.kl_horizon)

    progress = PrinterCallback() if args.disable_tqdm else ProgressCallback()
    callbacks = [DefaultFlowCallback(), *get_reporting_integration_callbacks(args.report_to), progress,
                 BarStatistics(progress)]
    handler = CallbackHandler(callbacks, model, tokenizer, optimizer, scheduler)
    state = TrainerState(is_local_process_zero=accelerator.is_local_main_process,
                         is_world_process_zero=accelerator.is_main_process)
    state.max_steps, state.logging_steps = args.max_steps, args.logging_steps
    state.num_train_epochs = math.ceil(args.max_steps * batches.rollout * processes / len(prompts))
    control = handler.on_train_begin(args, state, TrainerControl())
    device = accelerator.device
    model.train()
    for step in range(1, args.max_steps + 1):
        indices = next(stream)
        with timed("PPO rollouts"), unwrap_model_for_generation(
                model, accelerator, gather_deepspeed3_params=args.ds3_gather_for_generation) as unwrapped:
            rollout = collect(unwrapped.policy, unwrapped.values, reference, [prompts[i] for i in indices],
                              [prompt_ids[i] for i in indices], tokenizer, reward, args)
        beta = controller.value
        with timed("PPO updates"):
            with torch.no_grad():
                adv = advantages_of(rollout, args, beta)
            stats = update(model, accelerator, optimizer, rollout, adv, args, batches, shuffle)
        scheduler.step()

        # Every process contributes its rollout to the statistics and to the controller's KL (one gather).
        kl_per_response = adv.kl.sum(1)
        local = torch.stack([rollout.scores.mean(), kl_per_response.mean(),
                             (adv.rewards.sum(1)).mean(), rollout.raw_scores.mean(),
                             rollout.mask.sum(1).mean(), rollout.ended.float().mean(),
                             ppo_math.explained_variance(rollout.values, adv.returns, rollout.mask),
                             *[torch.stack(stats[k]).mean() for k in STAT_KEYS]]).to(device)
        shared = accelerator.gather(local[None]).float().mean(0).tolist()
        metrics = dict(zip(["objective/scores", "objective/kl", "objective/rlhf_reward", "objective/raw_scores",
                            "val/response_length", "val/eos_share", "val/explained_variance", *STAT_KEYS], shared))
        metrics["objective/kl_coef"] = beta
        metrics["objective/non_score_reward"] = -beta * metrics["objective/kl"]
        controller.update(metrics["objective/kl"], batches.rollout * processes)
        metrics["lr"] = scheduler.get_last_lr()[0]
        metrics["episode"] = step * batches.rollout * processes
        state.global_step, state.epoch = step, metrics["episode"] / len(prompts)
        if step % args.logging_steps == 0 or step == args.max_steps:
            state.log_history.append({**metrics, "step": step})
            control = handler.on_log(args, state, control, logs=metrics)
        control = handler.on_step_end(args, state, control)
    handler.on_train_end(args, state, control)
    return PPOResult(model, accelerator, state.log_history, controller.value)


STAT_KEYS = ["loss/policy_avg", "loss/value_avg", "policy/clipfrac_avg", "val/clipfrac_avg", "policy/entropy_avg",
             "policy/approxkl_avg", "val/ratio"]


def update(model, accelerator, optimizer, rollout: Rollout, adv: Advantages, args: PPOConfig, batches: Batches,
           shuffle: torch.Generator) -> dict[str, list[torch.Tensor]]:
    """`num_ppo_epochs` passes over the rollout in shuffled minibatches, one optimiser step per minibatch."""
    stats: dict[str, list[torch.Tensor]] = defaultdict(list)
    deepspeed = accelerator.state.deepspeed_plugin is not None
    width = rollout.prompt_width
    responses = rollout.response_ids
    for _ in range(args.num_ppo_epochs):
        order = torch.randperm(batches.rollout, generator=shuffle).to(responses.device)
        for start in range(0, batches.rollout, batches.minibatch):
            minibatch = order[start:start + batches.minibatch]
            for micro_start in range(0, batches.minibatch, batches.micro):
                rows = minibatch[micro_start:micro_start + batches.micro]
                with accelerator.accumulate(model):
                    logits, values = model(rollout.input_ids[rows], rollout.attention_mask[rows],
                                           rollout.position_ids[rows])
                    logits = response_logits(logits, width)
                    values = response_logits(values, width).float()
                    mask = rollout.mask[rows]
                    logprobs = token_logprobs(logits, responses[rows], args.temperature)
                    policy_terms = ppo_math.clipped_policy_loss(logprobs, rollout.logprobs[rows],
                                                                adv.advantages[rows], mask, args.cliprange)
                    value_terms = ppo_math.clipped_value_loss(values, rollout.values[rows], adv.returns[rows], mask,
                                                              args.cliprange_value)
                    loss = policy_terms.loss + args.vf_coef * value_terms.loss
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and not deepspeed:
                        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                with torch.no_grad():
                    stats["loss/policy_avg"].append(policy_terms.loss.detach())
                    stats["loss/value_avg"].append(value_terms.loss.detach())
                    stats["policy/clipfrac_avg"].append(policy_terms.clip_fraction.detach())
                    stats["val/clipfrac_avg"].append(value_terms.clip_fraction.detach())
                    stats["policy/entropy_avg"].append(ppo_math.entropy(logits.detach() / args.temperature, mask))
                    stats["policy/approxkl_avg"].append(ppo_math.approx_kl(logprobs.detach(), rollout.logprobs[rows],
                                                                           mask))
                    stats["val/ratio"].append(ppo_math.masked_mean(torch.exp(logprobs.detach()
                                                                             - rollout.logprobs[rows]), mask))
    return stats
