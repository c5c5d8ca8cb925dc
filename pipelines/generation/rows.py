"""What every backend returns: one row per (prompt, sample)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, Sequence


@dataclass(frozen=True)
class GenerationRow:
    prompt_id: str
    prompt: str            # the prompt as given (before any chat template)
    response: str          # decoded new tokens, special tokens removed
    prompt_tokens: int     # tokens the model was conditioned on (template included)
    response_tokens: int   # tokens generated, EOS included when the model stopped on it
    sample_index: int
    seed: int              # the per-sample seed (see config.sample_seed)
    response_ids: tuple[int, ...] = ()  # the sampled token ids (EOS included when the model stopped on it)

    def to_dict(self) -> dict:
        row = asdict(self)
        row["response_ids"] = list(self.response_ids)
        return row


class PromptLike(Protocol):
    prompt_id: str
    prompt: str


def as_prompt_pairs(prompts: Sequence) -> list[tuple[str, str]]:
    """(prompt_id, text) pairs from Prompt objects, (id, text) tuples or plain strings (id = position)."""
    pairs = []
    for index, item in enumerate(prompts):
        if isinstance(item, str):
            pairs.append((str(index), item))
        elif isinstance(item, tuple):
            pairs.append((str(item[0]), str(item[1])))
        else:
            pairs.append((str(item.prompt_id), str(item.prompt)))
    return pairs


def decode_response(tokenizer, new_ids: list[int]) -> tuple[str, tuple[int, ...]]:
    """Text and ids of generated ids up to and including the first EOS (anything after it dropped),
    decoded the same way by every backend, so equal tokens always give equal text (engines' own incremental
    detokenizers differ at the edges, e.g. on a trailing partial UTF-8 byte sequence)."""
    eos = tokenizer.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    for position, token in enumerate(new_ids):
        if token in eos_ids:
            new_ids = new_ids[:position + 1]
            break
    return tokenizer.decode(new_ids, skip_special_tokens=True), tuple(new_ids)
