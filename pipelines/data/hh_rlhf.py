"""Anthropic/hh-rlhf → prompt files and held-out texts.

The dataset (hub id `Anthropic/hh-rlhf`, or a local copy with the same layout: `<subset>/train.jsonl.gz`,
`<subset>/test.jsonl.gz`) holds one conversation pair per row: `chosen` and `rejected`, each a text of turns
"\\n\\nHuman: …\\n\\nAssistant: …", sharing every turn but the last assistant one. The rules:

- prompt: the first Human turn of `chosen`, stripped (the conversation starts there, so it stands alone; it is what
  the policy answers and what the RM template "\\n\\nHuman: {prompt} \\n\\nAssistant:" wraps). With
  `turns: single`, only conversations of one Human and one Assistant turn are kept. A row whose text does not
  start with a Human turn, or whose prompt is empty, is dropped and counted as malformed.
- training prompts: the train split of every subset, in subset order then row order; duplicates dropped.
- evaluation prompts and held-out texts: the test split, duplicates dropped, and also every prompt already among the
  training prompts (evaluation prompts are never trained on). Of these rows, `held_out` chosen by
  sha256("<seed>:<id>") give held-out texts (their whole `chosen` conversation, for perplexity); the rest are the
  evaluation prompts. The held-out texts are dialogues of the same kind the rewards judge: an in-domain fluency
  measure, not a control domain no reward touches (give other text for that, e.g. `prepare tldr`'s posts).
- duplicates: prompts equal up to whitespace; the first occurrence is kept.
- ids: "<subset>/<split>/<row index>", stable across runs, so the sweep's own validation/evaluation split (by id)
  does not depend on file order.
"""
from __future__ import annotations

import re
from typing import Literal, Sequence

from .rows import Prepared, dedup_key, drop_duplicates, require_rows, take_by_hash
from .sources import load_split

DATASET = "Anthropic/hh-rlhf"
SUBSETS = ("helpful-base", "harmless-base")  # the data the GPT-2 helpful and harmless RMs were trained on
TURN = re.compile(r"\n\n(Human|Assistant):")


def turns(text: str) -> list[tuple[str, str]] | None:
    """[(role, content)] of an hh-rlhf conversation; None when it does not start with a Human turn."""
    parts = TURN.split(text)
    if parts[0].strip() or len(parts) < 3 or parts[1] != "Human":
        return None
    return [(role, content.strip()) for role, content in zip(parts[1::2], parts[2::2])]


def prompt_of(chosen: str, single_turn: bool) -> str | None:
    """The first Human turn, or None for a malformed row (or a multi-turn one when `single_turn`)."""
    conversation = turns(chosen)
    if not conversation or not conversation[0][1]:
        return None
    if single_turn and [role for role, _ in conversation] != ["Human", "Assistant"]:
        return None
    return conversation[0][1]


def split_rows(source: str, subset: str, split: str, single_turn: bool, cache_dir: str | None,
               counts: dict) -> list[dict]:
    loaded = load_split(source, split, data_dir=subset, cache_dir=cache_dir)
    rows, dropped = [], 0
    for index, row in enumerate(loaded):
        chosen = row.get("chosen")
        prompt = prompt_of(chosen, single_turn) if isinstance(chosen, str) else None
        if prompt is None:
            dropped += 1
            continue
        rows.append({"id": f"{subset}/{split}/{index}", "prompt": prompt, "subset": subset,
                     "conversation": chosen.strip()})
    counts[f"{subset}/{split}"] = {"read": len(loaded), "dropped": dropped}
    return rows


def prepare_hh_rlhf(source: str = DATASET, subsets: Sequence[str] = SUBSETS, held_out: int = 500, seed: int = 0,
                    turns_kept: Literal["first", "single"] = "first", cache_dir: str | None = None) -> Prepared:
    single = turns_kept == "single"
    counts: dict = {}
    train = [r for subset in subsets for r in split_rows(source, subset, "train", single, cache_dir, counts)]
    test = [r for subset in subsets for r in split_rows(source, subset, "test", single, cache_dir, counts)]
    train, train_duplicates = drop_duplicates(train, "prompt")
    test, test_duplicates = drop_duplicates(test, "prompt")
    train_keys = {dedup_key(r["prompt"]) for r in train}
    test, seen_in_training = drop_duplicates(test, "prompt", seen=train_keys)
    require_rows(train, "hh-rlhf training prompts", 1, "check --source and --subsets")
    require_rows(test, "hh-rlhf test rows left for evaluation and held-out texts", held_out + 1,
                 "lower --held-out or add subsets")
    held, evaluation = take_by_hash(test, held_out, seed)
    prompt_row = lambda r: {"id": r["id"], "prompt": r["prompt"], "subset": r["subset"]}  # noqa: E731
    record = {
        "dataset": DATASET, "source": source, "subsets": list(subsets), "turns": turns_kept, "seed": seed,
        "rules": {
            "prompt": "first Human turn of `chosen`, stripped" + (" (single-turn conversations only)" if single
                                                                  else ""),
            "train_prompts": "train split; duplicates (equal up to whitespace) dropped, first kept",
            "eval_prompts": "test split; duplicates and prompts among the training prompts dropped; minus the "
                            "held-out rows",
            "held_out": f"{held_out} test rows chosen by sha256('<seed>:<id>'); text = their `chosen` conversation",
        },
        "read": counts,
        "dropped": {"train_duplicates": train_duplicates, "test_duplicates": test_duplicates,
                    "test_prompts_seen_in_training": seen_in_training,
                    "malformed_or_filtered": sum(c["dropped"] for c in counts.values())},
    }
    return Prepared("hh", {"train_prompts": [prompt_row(r) for r in train],
                           "eval_prompts": [prompt_row(r) for r in evaluation],
                           "held_out": [{"id": r["id"], "text": r["conversation"], "subset": r["subset"]}
                                        for r in held]}, record)
