"""Prompt and held-out text files for the real-scale configs, made from the datasets everyone uses.

    python -m pipelines.data prepare hh-rlhf --out data/          # Anthropic/hh-rlhf (hub id or a local copy)
    python -m pipelines.data prepare tldr --out data/             # Reddit TL;DR (CarperAI/openai_summarize_tldr)

Each writes three JSONL files and a record of how they were made (`<name>_prepare.json`): training prompts,
evaluation prompts (the sweep splits them into validation and evaluation itself) and held-out texts for the
perplexity metric. The rules — which split feeds which file, how prompts are taken from a row, how duplicates are
removed, how the held-out rows are chosen — are in each dataset's module and in the record.
"""
from .hh_rlhf import prepare_hh_rlhf
from .tldr import prepare_tldr

# dataset → (file prefix, preparation)
PREPARERS = {"hh-rlhf": ("hh", prepare_hh_rlhf), "tldr": ("tldr", prepare_tldr)}

__all__ = ["PREPARERS", "prepare_hh_rlhf", "prepare_tldr"]
