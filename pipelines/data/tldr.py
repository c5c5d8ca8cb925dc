"""Reddit TL;DR (as in rewarded soups' summarisation task) → prompt files and held-out texts.

The dataset (hub id `CarperAI/openai_summarize_tldr`, OpenAI's filtered TL;DR posts, or a local copy with the same
layout: `data/{train,valid,test}-*.parquet`) has a `prompt` column — "SUBREDDIT: r/…\\nTITLE: …\\nPOST: …\\nTL;DR:",
the post laid out for summarisation — and a `label` column, the author's own TL;DR. The rules:

- prompt: the `prompt` column as it is (the policy continues after "TL;DR:"); the author's summary is kept as
  `reference`. An empty prompt, or one without the "POST:" and "TL;DR:" markers, is dropped as malformed.
- training prompts: the train split, duplicates dropped.
- evaluation prompts: the test split, duplicates and prompts among the training prompts dropped.
- held-out texts: the post bodies (between "POST:" and "TL;DR:") of the valid split, duplicates dropped, `held_out`
  of them chosen by sha256("<seed>:<id>"): Reddit prose no prompt file holds.
- duplicates: prompts (or posts) equal up to whitespace; the first occurrence is kept.
- ids: "<split>/<row index>".
"""
from __future__ import annotations

import re

from .rows import Prepared, dedup_key, drop_duplicates, require_rows, take_by_hash
from .sources import load_split

DATASET = "CarperAI/openai_summarize_tldr"
POST = re.compile(r"\nPOST:(.*)\nTL;DR:\s*$", re.DOTALL)


def post_of(prompt: str) -> str | None:
    match = POST.search(prompt)
    return match.group(1).strip() if match and match.group(1).strip() else None


def split_rows(source: str, split: str, cache_dir: str | None, counts: dict) -> list[dict]:
    loaded = load_split(source, split, cache_dir=cache_dir)
    rows = [{"id": f"{split}/{index}", "prompt": row["prompt"], "reference": row.get("label"),
             "post": post_of(row["prompt"])}
            for index, row in enumerate(loaded) if isinstance(row.get("prompt"), str) and post_of(row["prompt"])]
    counts[split] = {"read": len(loaded), "dropped": len(loaded) - len(rows)}
    return rows


def prepare_tldr(source: str = DATASET, held_out: int = 500, seed: int = 0, cache_dir: str | None = None
                 ) -> Prepared:
    counts: dict = {}
    train, train_duplicates = drop_duplicates(split_rows(source, "train", cache_dir, counts), "prompt")
    test, test_duplicates = drop_duplicates(split_rows(source, "test", cache_dir, counts), "prompt")
    test, seen_in_training = drop_duplicates(test, "prompt", seen={dedup_key(r["prompt"]) for r in train})
    # A held-out post must be one no policy was prompted with (train) nor evaluated on (test).
    valid, valid_duplicates = drop_duplicates(split_rows(source, "valid", cache_dir, counts), "post",
                                              seen={dedup_key(r["post"]) for r in train + test})
    require_rows(train, "TL;DR training prompts", 1, "check --source")
    require_rows(test, "TL;DR evaluation prompts", 1, "check --source")
    require_rows(valid, "TL;DR valid posts for held-out texts", held_out, "lower --held-out")
    held, _ = take_by_hash(valid, held_out, seed)
    prompt_row = lambda r: {"id": r["id"], "prompt": r["prompt"], "reference": r["reference"]}  # noqa: E731
    record = {
        "dataset": DATASET, "source": source, "seed": seed,
        "rules": {"prompt": "the `prompt` column as it is; `label` kept as reference",
                  "train_prompts": "train split; duplicates (equal up to whitespace) dropped, first kept",
                  "eval_prompts": "test split; duplicates and prompts among the training prompts dropped",
                  "held_out": f"{held_out} post bodies of the valid split, duplicates and posts of the training "
                              "or evaluation prompts dropped, chosen by sha256('<seed>:<id>')"},
        "read": counts,
        "dropped": {"train_duplicates": train_duplicates, "test_duplicates": test_duplicates,
                    "test_prompts_seen_in_training": seen_in_training, "valid_duplicate_posts": valid_duplicates,
                    "malformed": sum(c["dropped"] for c in counts.values())},
    }
    return Prepared("tldr", {"train_prompts": [prompt_row(r) for r in train],
                             "eval_prompts": [prompt_row(r) for r in test],
                             "held_out": [{"id": r["id"], "text": r["post"]} for r in held]}, record)
