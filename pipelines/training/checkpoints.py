"""The training stage's tokenizer loading (models load through `lines.models`, the project's one loader)."""
from __future__ import annotations

from pathlib import Path

from lines.models import refuse_remote_code
from reward_models.tokenizer_setup import ensure_pad_token


def load_tokenizer(path: str | Path, padding_side: str = "right"):
    from transformers import AutoTokenizer  # heavy: only when a tokenizer is loaded

    refuse_remote_code(path, "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    ensure_pad_token(tokenizer, None)
    tokenizer.padding_side = padding_side
    return tokenizer

