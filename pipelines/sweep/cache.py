"""Content-addressed cache of a sweep: generations, scores and point summaries, keyed by what they depend on.

    sweep/samples/<gen_key>.jsonl       generations of one merged model on one prompt set
    sweep/scores/<score_key>.json       one objective's per-sample scores of those generations
    sweep/points/<point_key>.json       the point's summary (means, stderr, per-prompt means)

gen_key hashes θ0's and the policies' weight files (content), the merge spec, the prompts and the sampling
settings; score_key adds the objective's config. A re-run or a resumed run recomputes nothing that is already
there, and a changed reward only rescored, never regenerates.
"""
from __future__ import annotations

import json
from pathlib import Path

from lines.atomic import write_json, write_jsonl


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
