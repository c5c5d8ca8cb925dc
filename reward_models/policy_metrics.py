"""Metrics of the evaluated policy itself, for the forgetting study: KL to θ0 (on its own samples, or along
held-out texts) and held-out perplexity.

All are lower-is-better and need the policy (`needs_policy = True`): the sweep passes
`policy=PolicyHandle(model, tokenizer)` for the live model holding the current merge. Held-out-text metrics give
one value per text (`per_text`), the sampled-response KL one per response from its token ids (`uses_token_ids`).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lines.models import load_causal_lm

from .base import PolicyHandle, Reward, check_scores
from .errors import RewardError
from .records import column, read_records
from .text_format import policy_prompt_ids, response_ids

log = logging.getLogger(__name__)


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _max_positions(model, default: int = 2048) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or default)


def right_padded_batches(sequences: list[list[int]], pad_id: int, batch_size: int):
    """(indices, ids, attention mask) for batches of similar lengths, longest first. Right padding with a mask: real
    tokens see exactly what an unpadded forward pass sees."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    for begin in range(0, len(order), batch_size):
        batch = order[begin:begin + batch_size]
        width = max(len(sequences[i]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, :len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, :len(sequences[i])] = 1
        yield batch, ids, mask


def _positions(values, batch, sequences, starts) -> dict[int, np.ndarray]:
    """Per sequence, the values of the positions predicting tokens [start, len) (position t−1 predicts token t)."""
    return {i: values[row, max(starts[i], 1) - 1:len(sequences[i]) - 1] for row, i in enumerate(batch)}


@torch.inference_mode()
def token_logprobs(model, sequences: list[list[int]], starts: list[int], pad_id: int,
                   batch_size: int = 8) -> list[np.ndarray]:
    """log p(token_t | tokens_<t) for t in [start, len) of each sequence, as float64 arrays."""
    device = _model_device(model)
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    for batch, ids, mask in right_padded_batches(sequences, pad_id, batch_size):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logprobs.gather(-1, ids[:, 1:].to(device)[..., None])[..., 0].double().cpu().numpy()
        for i, values in _positions(picked, batch, sequences, starts).items():
            out[i] = values
    return out


@torch.inference_mode()
def token_kl(model, base_model, sequences: list[list[int]], starts: list[int], pad_id: int,
             batch_size: int = 8, base_cache: dict | None = None) -> list[np.ndarray]:
    """KL(p(·|x_<t) ‖ q(·|x_<t)) over the whole vocabulary for t in [start, len) of each sequence (p: `model`, q:
    `base_model`), in float64. Exact at each position; no sampling of the next token. `base_cache` keeps θ0's
    log-probabilities of each batch (keyed by its token ids) for texts scored again and again (held-out texts at
    every sweep point): the same numbers, one θ0 forward pass per text instead of one per point."""
    device, base_device = _model_device(model), _model_device(base_model)
    out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
    for batch, ids, mask in right_padded_batches(sequences, pad_id, batch_size):
        p = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.double(), -1)
        key = (ids.shape, ids.numpy().tobytes())
        q = base_cache.get(key) if base_cache is not None else None
        if q is None:
            q = torch.log_softmax(base_model(input_ids=ids.to(base_device),
                                             attention_mask=mask.to(base_device)).logits.double(), -1).to(p.device)
            if base_cache is not None:
                base_cache[key] = q
        kl = (p.exp() * (p - q)).sum(-1)[:, :-1].clamp_min(0.0).cpu().numpy()
        for i, values in _positions(kl, batch, sequences, starts).items():
            out[i] = values
    return out


def _check_vocabularies(name: str, policy_model, base_model) -> None:
    vocab_policy = policy_model.get_input_embeddings().num_embeddings
    vocab_base = base_model.get_input_embeddings().num_embeddings
    if vocab_policy != vocab_base:
        raise RewardError(f"reward '{name}': the policy ({vocab_policy} tokens) and θ0 ({vocab_base} tokens) "
                          "have different vocabularies; KL needs θ0 of the same model family and tokenizer")


def _load_base(base_model, base_path, name, device, dtype):
    if base_model is None:
        if base_path is None:
            raise RewardError(f"reward '{name}': needs `base` (the θ0 checkpoint directory)")
        base_model = load_causal_lm(base_path, device, dtype, what=f"reward '{name}': θ0 (`base`)")
    return base_model.eval()


class KLToBase(Reward):
    """KL(π ‖ π0) of a sampled response: Σ_t KL(π(·|x, y_<t) ‖ π0(·|x, y_<t)) over the response's positions, each
    term exact over the whole vocabulary (π at temperature 1, whatever the sampling was).

    Averaged over responses sampled from π at temperature 1 without top-p/top-k, this is KL(π ‖ π0) of the response
    distribution (the chain rule), with less variance than Σ_t log π(y_t)/π0(y_t) and never negative. Over responses
    sampled otherwise it is the per-token KL along those prefixes, and the report says how the samples were drawn.
    With the sampled token ids (`score_ids`, what the sweep passes) the EOS step counts too; from text alone
    (`score`) the response is re-tokenised after the prompt as the generator formats it. A sequence longer than the
    models' positions keeps its response and loses the start of its prompt (a response longer than that, its end).
    The policy and θ0 must share the tokenizer (checked by vocabulary).
    """

    higher_is_better = False
    needs_policy = True
    uses_token_ids = True

    def __init__(self, base_model=None, base_path: str | None = None, name: str = "kl",
                 batch_size: int = 8, device: str = "auto", dtype: str = "auto", max_length: int | None = None):
        super().__init__(name)
        self.base_model = _load_base(base_model, base_path, name, device, dtype)
        self.batch_size, self.max_length = batch_size, max_length

    def _score(self, prompts, responses, policy: PolicyHandle):
        tokenizer = policy.tokenizer
        return self.score_ids([policy_prompt_ids(tokenizer, p) for p in prompts],
                              [response_ids(tokenizer, r) for r in responses], policy)

    def score_ids(self, prompt_ids: Sequence[Sequence[int]], response_ids_: Sequence[Sequence[int]],
                  policy: PolicyHandle) -> np.ndarray:
        """One KL per (prompt ids, sampled response ids) pair."""
        _check_vocabularies(self.name, policy.model, self.base_model)
        limit = self.max_length or min(_max_positions(policy.model), _max_positions(self.base_model))
        sequences, starts, cut = [], [], 0
        for head, tail in zip(prompt_ids, response_ids_):
            head, tail = list(head), list(tail)
            if len(head) + len(tail) > limit:  # keep the response (what the KL is about); the prompt loses its start
                cut += 1
                tail = tail[:limit - 1]
                head = head[len(head) - (limit - len(tail)):]
            sequences.append(head + tail)
            starts.append(len(head))
        if cut:
            log.warning("reward '%s': %d prompt+response sequences longer than %d tokens lost the start of their "
                        "prompt (responses longer than that, their end)", self.name, cut, limit)
        tokenizer = policy.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        kls = token_kl(policy.model, self.base_model, sequences, starts, pad, self.batch_size)
        return check_scores(self.name, [float(k.sum()) for k in kls], len(sequences))


class HeldOutTexts(Reward):
    """A metric of the policy on a fixed set of held-out texts, one value per text (`score_texts`), so that its
    standard error and paired comparisons have the text as their unit. `score` (per response pair, for callers
    without texts of their own) gives every pair the mean over texts. Each text keeps its first `max_length`
    tokens, and never more than the model has positions (the tokenizer's special tokens included; the first token is
    not predicted)."""

    higher_is_better = False
    needs_policy = True
    per_text = True

    def __init__(self, texts: Sequence[str] | None = None, path: str | Path | None = None, field: str = "text",
                 name: str = "heldout", batch_size: int = 8, max_length: int = 256):
        super().__init__(name)
        if texts is None:
            if path is None:
                raise RewardError(f"reward '{name}': needs `texts` (a .txt/.jsonl/.csv/.parquet file)")
            texts = column(read_records(path), field, path)
        self.texts = [t for t in texts if t.strip()]
        if not self.texts:
            raise RewardError(f"reward '{name}': the held-out text set is empty; give a file with some text")
        self.batch_size, self.max_length = batch_size, max_length

    @property
    def text_ids(self) -> list[str]:
        return [f"text-{i:05d}" for i in range(len(self.texts))]

    def sequences(self, tokenizer, *models) -> list[list[int]]:
        """Token ids of each text, cut to `max_length` and to the positions of every model that will read them."""
        limit = min([self.max_length] + [_max_positions(m) for m in models])
        sequences = [tokenizer(t, truncation=True, max_length=limit)["input_ids"] for t in self.texts]
        if any(len(s) < 2 for s in sequences):
            raise RewardError(f"reward '{self.name}': a held-out text has fewer than two tokens; drop it from the file")
        return sequences

    def score_texts(self, policy: PolicyHandle) -> np.ndarray:
        raise NotImplementedError

    def _score(self, prompts, responses, policy: PolicyHandle):
        return np.full(len(prompts), float(self.score_texts(policy).mean()))


class HeldOutPerplexity(HeldOutTexts):
    """Perplexity of the policy on each held-out text: exp(mean NLL of the text's predicted tokens)."""

    def score_texts(self, policy: PolicyHandle) -> np.ndarray:
        tokenizer = policy.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        sequences = self.sequences(tokenizer, policy.model)
        logprobs = token_logprobs(policy.model, sequences, [1] * len(sequences), pad, self.batch_size)
        return check_scores(self.name, [math.exp(-float(lp.mean())) for lp in logprobs], len(sequences))


class HeldOutKL(HeldOutTexts):
    """Mean per-token KL(π ‖ π0) along each held-out text (the text as the prefix, each position's KL exact over the
    vocabulary): how far the policy moved from θ0 on text it was not trained on."""

    def __init__(self, base_model=None, base_path: str | None = None, device: str = "auto", dtype: str = "auto",
                 **kwargs):
        super().__init__(**kwargs)
        self.base_model = _load_base(base_model, base_path, self.name, device, dtype)
        self._base_cache: dict = {}  # θ0's log-probabilities of the held-out texts: the same at every point

    def score_texts(self, policy: PolicyHandle) -> np.ndarray:
        _check_vocabularies(self.name, policy.model, self.base_model)
        tokenizer = policy.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        sequences = self.sequences(tokenizer, policy.model, self.base_model)
        kls = token_kl(policy.model, self.base_model, sequences, [1] * len(sequences), pad, self.batch_size,
                       base_cache=self._base_cache)
        return check_scores(self.name, [float(k.mean()) for k in kls], len(sequences))
