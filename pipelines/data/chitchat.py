"""Real human chat conversations (the `chitchat-dataset` package, MIT) → prompt files and held-out texts.

The package's `dataset.json` maps a conversation id (a UUID) to its messages, grouped into turns (consecutive
messages of one sender). The rules:

- opener: the first turn of a conversation, its messages joined by a space, whitespace collapsed. Openers of
  fewer than `min_words` words ("Hello?", "hi is anyone there") ask nothing a reply can differ on and are dropped,
  as are those over `max_chars` characters (they are replies pasted into a new conversation, not openers).
- duplicates: openers equal up to whitespace; of equal ones the conversation first in id order is kept.
- held-out texts (perplexity, in domain): `held_out` conversations chosen by sha256("<seed>:<id>") among those of
  at least `held_out_turns` turns and `held_out_words` words (a lone "hi" is no text to measure fluency on), as
  whole conversations (one line per turn); their openers are in no prompt file.
- evaluation prompts: of the other openers, `eval_share` of them, chosen by sha256("eval:<seed>:<id>"); the sweep
  splits them into validation and evaluation by id itself. Training prompts: the rest. No opener is in both.
- ids: the conversation's UUID, stable across runs and file orders.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from ..errors import PipelineError
from .rows import Prepared, drop_duplicates, require_rows, take_by_hash

PACKAGE = "chitchat-dataset"
INSTALL = "make install (it installs the `real` extra: pip install -e '.[real]')"


def dataset_path() -> Path:
    spec = importlib.util.find_spec("chitchat_dataset")
    if spec is None or spec.origin is None:
        raise PipelineError(f"the package {PACKAGE} is not installed; run {INSTALL}")
    path = Path(spec.origin).parent / "dataset.json"
    if not path.is_file():
        raise PipelineError(f"{path} is missing from the installed {PACKAGE}; reinstall it: {INSTALL}")
    return path


def turn_text(turn: list[dict]) -> str:
    return " ".join(" ".join(str(m.get("text", "")).split()) for m in turn).strip()


def conversations(path: Path) -> list[dict]:
    """[{id, turns: [text]}] in id order; conversations without a readable first turn are skipped."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for cid in sorted(data):
        turns = [turn_text(t) for t in data[cid].get("messages", []) if isinstance(t, list)]
        turns = [t for t in turns if t]
        if turns:
            rows.append({"id": cid, "turns": turns})
    return rows


def eval_key(seed: int, cid: str) -> str:
    return hashlib.sha256(f"eval:{seed}:{cid}".encode()).hexdigest()


def long_enough(row: dict, turns: int, words: int) -> bool:
    return len(row["turns"]) >= turns and sum(len(t.split()) for t in row["turns"]) >= words


def prepare_chitchat(held_out: int = 500, seed: int = 0, eval_share: float = 0.3, min_words: int = 4,
                     max_chars: int = 200, held_out_turns: int = 4, held_out_words: int = 40,
                     source: str | None = None, cache_dir: str | None = None) -> Prepared:
    path = Path(source) if source else dataset_path()
    if not path.is_file():
        raise PipelineError(f"--source '{path}' is not a file; give the package's dataset.json or leave --source out")
    try:
        rows = conversations(path)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise PipelineError(f"{path}: not the chitchat dataset's JSON ({err}); reinstall {PACKAGE}") from None
    candidates = [r for r in rows if long_enough(r, held_out_turns, held_out_words)]
    require_rows(candidates, f"chitchat conversations of {held_out_turns}+ turns and {held_out_words}+ words",
                 held_out, "lower --held-out")
    held, _ = take_by_hash(candidates, held_out, seed)
    held_ids = {r["id"] for r in held}
    rest = [r for r in rows if r["id"] not in held_ids]
    for row in rest:
        row["prompt"] = row["turns"][0]
    kept = [r for r in rest if len(r["prompt"].split()) >= min_words and len(r["prompt"]) <= max_chars]
    too_short_or_long = len(rest) - len(kept)
    held_keys = {" ".join(r["turns"][0].split()) for r in held}
    kept, duplicates = drop_duplicates(kept, "prompt", seen=held_keys)
    ranked = sorted(kept, key=lambda r: eval_key(seed, r["id"]))
    n_eval = round(eval_share * len(ranked))
    eval_ids = {r["id"] for r in ranked[:n_eval]}
    train = [r for r in kept if r["id"] not in eval_ids]
    evaluation = [r for r in kept if r["id"] in eval_ids]
    require_rows(train, "chitchat training prompts", 1, "lower --held-out")
    require_rows(evaluation, "chitchat evaluation prompts", 1, "lower --held-out")
    record = {
        "dataset": "chitchat-dataset (Chit Chat Challenge conversations)", "licence": "MIT", "source": str(path),
        "seed": seed,
        "rules": {
            "prompt": f"first turn of a conversation (its messages joined by a space); fewer than {min_words} words "
                      f"or over {max_chars} characters dropped",
            "held_out": f"{held_out} conversations of {held_out_turns}+ turns and {held_out_words}+ words chosen by "
                        "sha256('<seed>:<id>'); text = the whole conversation, one line per turn; their openers are "
                        "in no prompt file",
            "eval_prompts": f"{eval_share:.0%} of the other openers, chosen by sha256('eval:<seed>:<id>')",
            "train_prompts": "the rest; duplicates (equal up to whitespace) dropped across every file",
        },
        "read": {"conversations": len(rows)},
        "dropped": {"too_short_or_long": too_short_or_long, "duplicates": duplicates},
    }
    prompt_row = lambda r: {"id": r["id"], "prompt": r["prompt"]}  # noqa: E731
    return Prepared("chitchat", {"train_prompts": [prompt_row(r) for r in train],
                                 "eval_prompts": [prompt_row(r) for r in evaluation],
                                 "held_out": [{"id": r["id"], "text": "\n".join(r["turns"])} for r in held]}, record)
