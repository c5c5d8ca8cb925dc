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


class SweepCache:
    def __init__(self, sweep_dir: Path):
        self.dir = Path(sweep_dir)

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.dir / kind / f"{key}{suffix}"

    def load_samples(self, gen_key: str) -> list[dict] | None:
        path = self._path("samples", gen_key, ".jsonl")
        if not path.exists():
            return None
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def save_samples(self, gen_key: str, rows: list[dict]) -> None:
        write_jsonl(self._path("samples", gen_key, ".jsonl"), rows)

    def load_scores(self, score_key: str) -> dict | None:
        path = self._path("scores", score_key, ".json")
        return json.loads(path.read_text()) if path.exists() else None

    def save_scores(self, score_key: str, record: dict) -> None:
        write_json(self._path("scores", score_key, ".json"), record, indent=None)

    def load_point(self, point_key: str) -> dict | None:
        path = self._path("points", point_key, ".json")
        return json.loads(path.read_text()) if path.exists() else None

    def save_point(self, point_key: str, record: dict) -> None:
        write_json(self._path("points", point_key, ".json"), record)
