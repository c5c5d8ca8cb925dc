"""Small local copies of hh-rlhf and Reddit TL;DR in the datasets' own formats and layouts.

hh-rlhf: <subset>/{train,test}.jsonl.gz, one {"chosen", "rejected"} conversation pair per line.
TL;DR (CarperAI/openai_summarize_tldr): data/{train,valid,test}-00000-of-00001.parquet with `prompt` and `label`.
The hand-written rows carry the cases the preparation must handle (multi-turn, duplicates up to whitespace, a prompt
seen in training, malformed rows); `bulk` rows only make the files large enough for the real configs' sizes.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path


def hh(human: str, assistant: str, *more: str) -> str:
    turns = [("Human", human), ("Assistant", assistant)] + [
        (("Human", "Assistant")[i % 2], text) for i, text in enumerate(more)]
    return "".join(f"\n\n{role}: {text}" for role, text in turns)


HH_ROWS = {
    ("helpful-base", "train"): [
        hh("What is a good soup for winter?", "Try lentil soup."),
        hh("How do I bake bread?", "Mix flour, water and yeast.", "How long?", "About an hour."),
        hh("What is a good  soup for\nwinter?", "Pho."),                     # duplicate up to whitespace
        "\n\nAssistant: Hello, how can I help?",                              # malformed: no Human turn first
    ],
    ("harmless-base", "train"): [
        hh("How can I pick a lock?", "I can't help with that."),
    ],
    ("helpful-base", "test"): [
        hh("What is a good soup for winter?", "Minestrone."),                 # already a training prompt
        hh("Which tea helps me sleep?", "Chamomile."),
        hh("Which tea helps me sleep?", "Camomile tea."),                     # duplicate
        hh("", "An empty question."),                                          # malformed: empty prompt
    ],
    ("harmless-base", "test"): [
        hh("How do I hurt someone?", "I won't help with that.", "Please?", "No."),
        hh("Is it ok to lie to my boss?", "Honesty is usually better."),
    ],
}


def write_hh_rlhf(root: Path, bulk_train: int = 0, bulk_test: int = 0) -> Path:
    for (subset, split), texts in HH_ROWS.items():
        bulk = bulk_train if split == "train" else bulk_test
        texts = texts + [hh(f"Question {split} {subset} {i}: what should I cook tonight?", f"Answer {i}.")
                         for i in range(bulk)]
        path = root / subset / f"{split}.jsonl.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            for text in texts:
                rejected = text.rsplit("\n\nAssistant:", 1)[0] + "\n\nAssistant: No idea."
                handle.write(json.dumps({"chosen": text, "rejected": rejected}) + "\n")
    return root


def tldr_prompt(subreddit: str, title: str, post: str) -> str:
    return f"SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"


TLDR_ROWS = {
    "train": [(tldr_prompt("cooking", "Soup went wrong", "I burnt the onions and the soup tasted bitter."),
               "burnt onions ruined soup"),
              (tldr_prompt("cooking", "Soup went wrong", "I burnt the onions and the soup tasted  bitter."),
               "duplicate")],
    "test": [(tldr_prompt("cooking", "Soup went wrong", "I burnt the onions and the soup tasted bitter."), "seen"),
             (tldr_prompt("tea", "Best tea for sleep?", "Chamomile works for me, what about you?"), "chamomile"),
             ("a prompt without the markers", "malformed")],
    "valid": [(tldr_prompt("running", "First 10k", "I ran my first 10k today and it felt great."), "ran 10k"),
              (tldr_prompt("books", "Reading slump", "I have not finished a book in months."), "slump")],
}


def write_tldr(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in TLDR_ROWS.items():
        pq.write_table(pa.table({"prompt": [p for p, _ in rows], "label": [label for _, label in rows]}),
                       root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def prepared_workdir(root: Path, source_root: Path) -> Path:
    """A directory to start jobs in, holding data/ prepared from a local hh-rlhf copy large enough for the real
    config's prompt counts (256 held-out training prompts; 200 validation + 1000 evaluation prompts), and a copy of
    configs/ (accelerate and DeepSpeed files are read from the directory a job starts in)."""
    import contextlib
    import io
    import shutil

    from pipelines.data.__main__ import main

    source = write_hh_rlhf(source_root, bulk_train=200, bulk_test=1000)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["prepare", "hh-rlhf", "--source", str(source), "--out", str(root / "data"),
                     "--cache-dir", str(root / ".cache")]) == 0
    shutil.copytree(Path(__file__).resolve().parents[1] / "configs", root / "configs")
    return root
