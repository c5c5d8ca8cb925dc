"""Per-sample seeded sampling inside transformers' `generate`.

`generate(do_sample=True)` draws every row of a batch from one global RNG, so a sample depends on its
batch neighbours. Here a logits processor does the sampling itself — temperature, nucleus (top-p), then
inverse-CDF with one uniform from the row's own `torch.Generator` — and leaves only the chosen token
finite, so greedy decoding "picks" it. Each row consumes exactly one uniform per step, so a sample
depends only on its own seed (up to float effects of padding on the logits).
"""
from __future__ import annotations

from typing import Sequence

import torch

try:  # transformers is a pipeline extra; this module is only imported with it installed
    from transformers import LogitsProcessor
except ImportError:  # pragma: no cover
    LogitsProcessor = object


def nucleus_sample(logits: torch.Tensor, uniforms: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Token ids [batch] from logits [batch, vocab] and uniforms in [0, 1) [batch], in float64."""
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
    cumulative = sorted_probs.cumsum(-1)
    # Keep the smallest prefix whose mass reaches top_p (the most likely token always stays).
    keep = (cumulative - sorted_probs) < top_p
    kept = sorted_probs * keep
    kept_cumulative = kept.cumsum(-1)
    targets = uniforms.double()[:, None] * kept_cumulative[:, -1:]
    choice = torch.searchsorted(kept_cumulative, targets, right=True)
    choice = torch.minimum(choice, keep.sum(-1, keepdim=True) - 1)  # rounding can land past the last kept token
    return order.gather(-1, choice)[:, 0]


class SeededRowSampler(LogitsProcessor):
    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float):
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in self.generators])
        tokens = nucleus_sample(scores.detach().cpu(), uniforms, self.temperature, self.top_p).to(scores.device)
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(-1, tokens[:, None], 0.0)
        return forced
