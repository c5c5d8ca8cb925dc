"""Metrics of the evaluated policy itself, for the forgetting study: KL to θ0 and held-out perplexity.

Both are lower-is-better and need the policy (`needs_policy = True`): the sweep passes
`policy=PolicyHandle(model, tokenizer)` for the live model holding the current merge.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lines.models import load_causal_lm

from .base import PolicyHandle, Reward
from .errors import RewardError
from .records import column, read_records
from .text_format import policy_prompt_ids, response_ids

log = logging.getLogger(__name__)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _max_positions(model, default: int = 2048) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or default)


@torch.inference_mode()
def token_logprobs(model, sequences: list[list[int]], starts: list[int], pad_id: int,
                   batch_size: int = 8) -> list[np.ndarray]:
    """log p(token_t | tokens_<t) for t in [start, len) of each sequence, as float64 arrays.

    Right padding with an attention mask: real tokens see exactly what an unpadded forward pass sees.
    """
    device = _model_device(model)
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    for begin in range(0, len(order), batch_size):
        batch = order[begin:begin + batch_size]
        width = max(len(sequences[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, :len(sequences[i])] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # position t-1 predicts token t
        picked = logprobs.gather(-1, ids[:, 1:].to(device)[..., None])[..., 0].double().cpu().numpy()
        for row, i in enumerate(batch):
            start = max(starts[i], 1)  # token 0 has no prediction
            out[i] = picked[row, start - 1:len(sequences[i]) - 1]
    return out


class KLToBase(Reward):
    """Per-sample Monte-Carlo KL(policy ‖ θ0) = Σ_t [log p_policy(y_t) − log p_θ0(y_t)] over the response.

    The response text is re-tokenised after the prompt formatted as the generator formats it
    (`policy_prompt_ids`), so it is an estimate over the sampled text, not over the exact sampled ids.
    An empty response has KL 0. Sequences longer than the model's positions keep their first tokens.
    The policy and θ0 must share the tokenizer (checked by vocabulary size).
    """

    higher_is_better = False
    needs_policy = True

    def __init__(self, base_model=None, base_path: str | None = None, name: str = "kl",
                 batch_size: int = 8, device: str = "auto", dtype: str = "auto", max_length: int | None = None):
        super().__init__(name)
        if base_model is None:
            if base_path is None:
                raise RewardError(f"reward '{name}': kl needs `base` (the θ0 checkpoint directory)")
            base_model = load_causal_lm(base_path, device, dtype, what=f"reward '{name}': θ0 (`base`)")
        self.base_model = base_model.eval()
        self.batch_size, self.max_length = batch_size, max_length

    def _score(self, prompts, responses, policy: PolicyHandle):
        tokenizer = policy.tokenizer
        vocab_policy = policy.model.get_input_embeddings().num_embeddings
        vocab_base = self.base_model.get_input_embeddings().num_embeddings
        if vocab_policy != vocab_base:
            raise RewardError(f"reward '{self.name}': the policy ({vocab_policy} tokens) and θ0 ({vocab_base} tokens) "
                              "have different vocabularies; KL needs θ0 of the same model family and tokenizer")
        limit = self.max_length or min(_max_positions(policy.model), _max_positions(self.base_model))
        sequences, starts, cut = [], [], 0
        for prompt, response in zip(prompts, responses):
            head, tail = policy_prompt_ids(tokenizer, prompt), response_ids(tokenizer, response)
            seq = head + tail
            cut += len(seq) > limit
            sequences.append(seq[:limit])
            starts.append(len(head))
        if cut:
            log.warning("reward '%s': %d sequences longer than %d tokens were truncated", self.name, cut, limit)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        lp_policy = token_logprobs(policy.model, sequences, starts, pad, self.batch_size)
        lp_base = token_logprobs(self.base_model, sequences, starts, pad, self.batch_size)
        return [float(np.sum(a - b)) for a, b in zip(lp_policy, lp_base)]


class HeldOutPerplexity(Reward):
    """Perplexity of the policy on a fixed general-text set: exp(Σ NLL / Σ predicted tokens).

    It describes the policy, not a sample: every pair of one call gets the same value, so it averages
    and plots like the rewards. Each text keeps its first `max_length` tokens (tokenizer's special
    tokens included, the first token is not predicted).
    """

    higher_is_better = False
    needs_policy = True

    def __init__(self, texts: Sequence[str] | None = None, path: str | Path | None = None, field: str = "text",
                 name: str = "perplexity", batch_size: int = 8, max_length: int = 256):
        super().__init__(name)
        if texts is None:
            if path is None:
                raise RewardError(f"reward '{name}': perplexity needs `texts` (a .txt/.jsonl/.csv/.parquet file)")
            texts = column(read_records(path), field, path)
        self.texts = [t for t in texts if t.strip()]
        if not self.texts:
            raise RewardError(f"reward '{name}': the held-out text set is empty; give a file with some text")
        self.batch_size, self.max_length = batch_size, max_length
        self.last_value: float | None = None

    def corpus_perplexity(self, policy: PolicyHandle) -> float:
        tokenizer = policy.tokenizer
        sequences = [tokenizer(t)["input_ids"][:self.max_length] for t in self.texts]
        sequences = [s for s in sequences if len(s) >= 2]
        if not sequences:
            raise RewardError(f"reward '{self.name}': no held-out text has two or more tokens")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        logprobs = token_logprobs(policy.model, sequences, [1] * len(sequences), pad, self.batch_size)
        total = np.concatenate(logprobs)
        return float(math.exp(-total.sum() / total.size))

    def _score(self, prompts, responses, policy: PolicyHandle):
        self.last_value = self.corpus_perplexity(policy)
        return np.full(len(prompts), self.last_value)
