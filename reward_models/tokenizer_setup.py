"""Padding set-up for tokenizers that ship without a pad token (GPT-2 and Llama RMs among them)."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def ensure_pad_token(tokenizer, model=None) -> str:
    """Give `tokenizer` a pad token and tell `model` its id; return what was done.

    Order: keep an existing pad token; else reuse EOS (the common convention for GPT-2/Llama RMs: padded
    positions are masked, and sequence-classification heads pool the last non-pad token); else UNK;
    else add a new '<pad>' token and resize the model's embeddings so the id exists.
    """
    action = "existing"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token, action = tokenizer.eos_token, "eos"
        elif getattr(tokenizer, "unk_token", None) is not None:
            tokenizer.pad_token, action = tokenizer.unk_token, "unk"
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            action = "added"
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
        log.info("tokenizer had no pad token: using %s (%r)", action, tokenizer.pad_token)
    if model is not None:
        # Sequence-classification heads find the last real token through config.pad_token_id; without it
        # they refuse batches larger than one.
        model.config.pad_token_id = tokenizer.pad_token_id
        if hasattr(model.config, "get_text_config"):
            model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return action
