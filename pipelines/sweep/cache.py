"""Content-addressed cache of a sweep: generations, scores and point summaries, keyed by what they depend on.

    sweep/samples/<gen_key>.jsonl       generations of one merged model on one prompt set
    sweep/scores/<score_key>.json       one objective's per-sample scores of those generations
    sweep/points/<point_key>.json       the point's summary (means, stderr, per-prompt means)

The keys (below) are built from content: θ0's and the policies' fingerprints, the canonical merge (equal
merges asked for in different ways share one key), the prompts and the sampling settings; a score adds its
objective's identity (its config and the content of every file it reads). A re-run or a resumed run recomputes
nothing that is already there, and a changed reward is only rescored, never regenerated.
"""
from __future__ import annotations

import json
from pathlib import Path

from lines.atomic import write_json, write_jsonl
from lines.fingerprints import stable_hash
from lines.recipe import MergeSpec, canonical_merge


def merge_key(models: dict, spec: MergeSpec) -> str:
    """The merged weights: the inputs' content and what is computed from them."""
    return stable_hash({"models": models, "merge": canonical_merge(spec)})


def generation_key(merge: str, prompts, generation: dict) -> str:
    """Generations of those weights on these prompts with these sampling settings."""
    return stable_hash({"merge": merge, "prompts": [(p.prompt_id, p.prompt) for p in prompts],
                        "generation": generation})


def score_key(gen_key: str, objective_identity: dict) -> str:
    return stable_hash({"gen": gen_key, "objective": objective_identity})


def point_key(gen_key: str, score_keys: dict, description: dict) -> str:
    return stable_hash({"gen": gen_key, "scores": score_keys, "point": description})


SAMPLE_FIELDS = ("prompt_id", "prompt", "response", "response_tokens")
SCORE_FIELDS = ("key", "values", "raw", "normalization")
POINT_FIELDS = ("key", "gen_key", "variant", "weights", "merge", "prompt_ids", "objectives")
END_OF_SAMPLES = "end_of_samples"  # the last line of a samples file: {END_OF_SAMPLES: key, "rows": count}


class Damaged(ValueError):
    """A cache entry that cannot be trusted; `str()` says why."""


def read_json_text(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        raise Damaged("truncated or not JSON") from None


def check_record(record: object, key: str, fields: tuple[str, ...]) -> dict:
    """`record` as a dict with `fields`, naming `key` as its own; else Damaged."""
    if not isinstance(record, dict):
        raise Damaged("not a JSON object")
    missing = [f for f in fields if f not in record]
    if missing:
        raise Damaged(f"missing field {missing[0]!r}")
    if record["key"] != key:
        raise Damaged("its key does not match its name (a file swapped or left by another run)")
    return record


def parse_samples(text: str, gen_key: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line]
    rows = [read_json_text(line) for line in lines]
    end = rows.pop() if rows else None
    if not isinstance(end, dict) or END_OF_SAMPLES not in end:
        raise Damaged("truncated: no end-of-samples line")
    if end[END_OF_SAMPLES] != gen_key:
        raise Damaged("its key does not match its name (a file swapped or left by another run)")
    if end.get("rows") != len(rows):
        raise Damaged(f"{len(rows)} rows where its record says {end.get('rows')}")
    for row in rows:
        if not isinstance(row, dict) or any(f not in row for f in SAMPLE_FIELDS):
            raise Damaged("a row without its fields")
    return rows


def parse_scores(text: str, score_key: str) -> dict:
    record = check_record(read_json_text(text), score_key, SCORE_FIELDS)
    if not isinstance(record["values"], list) or len(record["values"]) != len(record["raw"]):
        raise Damaged("values and raw scores of different lengths")
    return record


def parse_point(text: str, point_key: str) -> dict:
    return check_record(read_json_text(text), point_key, POINT_FIELDS)


class SweepCache:
    def __init__(self, sweep_dir: Path):
        self.dir = Path(sweep_dir)
        self.damaged: dict[Path, str] = {}  # entries found damaged (and so recomputed), with why
        self._sound_samples: set[str] = set()  # generation keys whose samples this process wrote or checked

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.dir / kind / f"{key}{suffix}"

    def _load(self, path: Path, key: str, parse):
        """The entry at `path`, or None when it is missing or damaged (recorded in `damaged`)."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self.damaged[path] = f"unreadable ({exc.__class__.__name__})"
            return None
        try:
            return parse(text, key)
        except Damaged as exc:
            self.damaged[path] = str(exc)
            return None

    def damage_warning(self) -> str | None:
        """One line on the damaged entries this process found and recomputed, or None."""
        if not self.damaged:
            return None
        first, why = next(iter(self.damaged.items()))
        return (f"warning: {len(self.damaged)} damaged cache entr{'y' if len(self.damaged) == 1 else 'ies'} under "
                f"{self.dir} read as missing and recomputed (e.g. {first.relative_to(self.dir)}: {why})")

    def load_samples(self, gen_key: str) -> list[dict] | None:
        rows = self._load(self._path("samples", gen_key, ".jsonl"), gen_key, parse_samples)
        if rows is not None:
            self._sound_samples.add(gen_key)
        return rows

    def has_samples(self, gen_key: str) -> bool:
        """Whether sound samples are cached (read and checked once per process; entries are never rewritten with
        other content, so once sound they stay so)."""
        return gen_key in self._sound_samples or self.load_samples(gen_key) is not None

    def save_samples(self, gen_key: str, rows: list[dict]) -> None:
        write_jsonl(self._path("samples", gen_key, ".jsonl"), [*rows, {END_OF_SAMPLES: gen_key, "rows": len(rows)}])
        self._sound_samples.add(gen_key)

    def load_scores(self, score_key: str) -> dict | None:
        return self._load(self._path("scores", score_key, ".json"), score_key, parse_scores)

    def save_scores(self, score_key: str, record: dict) -> None:
        write_json(self._path("scores", score_key, ".json"), {"key": score_key, **record}, indent=None)

    def load_point(self, point_key: str) -> dict | None:
        return self._load(self._path("points", point_key, ".json"), point_key, parse_point)

    def save_point(self, point_key: str, record: dict) -> None:
        write_json(self._path("points", point_key, ".json"), record)
