"""One PPO rollout: responses sampled from the policy on a batch of training prompts, with what PPO needs of them.

Prompts are left-padded to the batch's widest, so every response starts at the same column P; a response ends at its
first EOS (kept, as generation keeps it) and pad follows. Generation is batched with the KV cache, and the policy's
log-probabilities of the sampled tokens come from the logits generation already computed (no second forward pass of
the policy); the reference (LoRA: the policy with its adapter off; full fine-tuning: a frozen θ0) and the value model
each take one forward pass over the whole sequences. Log-probabilities are those of the sampling distribution
(logits / temperature) for the policy and the reference alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from trl.trainer.utils import selective_log_softmax

from pipelines.generation.rows import decode_response
from reward_models import Reward

from .rewards import to_maximise


@dataclass
class Rollout:
    input_ids: torch.Tensor       # [B, P + T] prompt (left-padded) then response (pad after its end)
    attention_mask: torch.Tensor  # [B, P + T]
    position_ids: torch.Tensor    # [B, P + T] as generation numbered them
    prompt_width: int             # P
    mask: torch.Tensor            # [B, T] 1 on response tokens (EOS included)
    logprobs: torch.Tensor        # [B, T] of the policy that sampled
    ref_logprobs: torch.Tensor    # [B, T]
    values: torch.Tensor          # [B, T]
    scores: torch.Tensor          # [B] the reward, as a quantity to maximise (penalties included)
    raw_scores: torch.Tensor      # [B] the reward as the project scores it
    ended: torch.Tensor           # [B] bool: the response ended with EOS
    responses: list[str]

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_width:]


def left_pad(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[index, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def response_mask(response_ids: torch.Tensor, eos_ids: set[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask [B, T] up to and including the first EOS, whether each response has an EOS)."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= response_ids == eos
    ended = is_eos.any(1)
    # EOS at column e: keep columns ≤ e; no EOS: keep every column.
    first = torch.where(ended, is_eos.long().argmax(1), torch.full_like(ended, response_ids.shape[1] - 1, dtype=torch.long))
    columns = torch.arange(response_ids.shape[1], device=response_ids.device)
    return (columns[None, :] <= first[:, None]).float(), ended


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    return selective_log_softmax(logits.float() / temperature, tokens)


def sequence_forward(model, rollout_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor):
    return model(input_ids=rollout_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)


def response_logits(logits: torch.Tensor, prompt_width: int) -> torch.Tensor:
    """The logits that predict each response token: positions P − 1 … P + T − 2."""
    return logits[:, prompt_width - 1:-1]


@torch.no_grad()
def sample(policy, prompt_ids: list[list[int]], tokenizer, max_new_tokens: int, temperature: float):
    """(input_ids, attention_mask, position_ids, prompt width, policy log-probabilities [B, T]) of sampled
    responses."""
    device = next(policy.parameters()).device
    ids, prompt_mask = left_pad(prompt_ids, tokenizer.pad_token_id, device)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_k=0,
                              top_p=1.0, num_beams=1, repetition_penalty=1.0, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=tokenizer.eos_token_id, return_dict_in_generate=True, output_logits=True)
    out = policy.generate(input_ids=ids, attention_mask=prompt_mask, generation_config=config)
    width = ids.shape[1]
    responses = out.sequences[:, width:]
    logits = torch.stack(out.logits, 1)  # the raw logits generation sampled from (temperature applied below)
    return ids, prompt_mask, responses, token_logprobs(logits, responses, temperature)


def eos_ids(tokenizer) -> set[int]:
    eos = tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


@torch.no_grad()
def collect(policy, value_fn, reference, prompts: list[str], prompt_ids: list[list[int]], tokenizer, reward: Reward,
            settings) -> Rollout:
    """A rollout of `prompts` (`settings`: the PPOConfig). `value_fn(ids, mask, positions)` gives per-position values;
    `reference` is a frozen model, or None for the policy with its adapter off (LoRA)."""
    ids, prompt_mask, responses, logprobs = sample(policy, prompt_ids, tokenizer, settings.response_length,
                                                   settings.temperature)
    width = ids.shape[1]
    mask, ended = response_mask(responses, eos_ids(tokenizer))
    responses = torch.where(mask.bool(), responses, torch.full_like(responses, tokenizer.pad_token_id))
    input_ids = torch.cat([ids, responses], 1)
    attention_mask = torch.cat([prompt_mask, mask.long()], 1)
    position_ids = (attention_mask.cumsum(1) - 1).clamp_min(0)
    chunk = settings.local_rollout_forward_batch_size
    ref_parts, value_parts = [], []
    for start in range(0, input_ids.shape[0], chunk):
        part = slice(start, start + chunk)
        args = (input_ids[part], attention_mask[part], position_ids[part])
        if reference is None:
            with policy.disable_adapter():
                ref_logits = sequence_forward(policy, *args).logits
        else:
            ref_logits = sequence_forward(reference, *args).logits
        ref_parts.append(token_logprobs(response_logits(ref_logits, width), responses[part], settings.temperature))
        value_parts.append(response_logits(value_fn(*args), width))
    texts = [decode_response(tokenizer, row[:int(n)])[0] for row, n in zip(responses.tolist(), mask.sum(1).tolist())]
    raw = torch.as_tensor(reward.score(prompts, texts), dtype=torch.float32)
    scores = torch.as_tensor(to_maximise(reward, raw.numpy()), dtype=torch.float32)
    if settings.missing_eos_penalty is not None:
        scores = scores - settings.missing_eos_penalty * (~ended.cpu()).float()
    device = input_ids.device
    return Rollout(input_ids, attention_mask, position_ids, width, mask, logprobs * mask,
                   torch.cat(ref_parts) * mask, torch.cat(value_parts).float() * mask, scores.to(device),
                   raw.to(device), ended, texts)

