"""Content-addressed cache of a sweep: generations, scores and point summaries, keyed by what they depend on.

    sweep/samples/<gen_key>.jsonl       generations of one merged model on one prompt set
    sweep/scores/<score_key>.json       one objective's per-sample scores of those generations
    sweep/points/<point_key>.json       the point's summary (means, stderr, per-prompt means)

gen_key hashes θ0's and the policies' weight files (content), the merge spec, the prompts and the sampling
settings; score_key adds the objective's config. A re-run or a resumed run recomputes nothing that is already
there, and a changed reward only rescored, never regenerates.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_fingerprint(path: str | Path, memo_file: Path | None = None) -> str:
    """sha256 over the bytes of a checkpoint's weight and config files, memoised by (size, mtime) per file."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and (
        p.suffix in (".safetensors", ".bin", ".json")) and p.name != "manifest.json")
    memo = json.loads(memo_file.read_text()) if memo_file and memo_file.exists() else {}
    digests = []
    changed = False
    for file in files:
        stat = file.stat()
        token = f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        if token not in memo:
            h = hashlib.sha256()
            with open(file, "rb") as f:
                while chunk := f.read(1 << 24):
                    h.update(chunk)
            memo[token] = h.hexdigest()
            changed = True
        digests.append((file.name, memo[token]))
    if memo_file and changed:
        write_atomic(memo_file, json.dumps(memo, indent=0))
    return stable_hash(digests)


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
        write_atomic(self._path("samples", gen_key, ".jsonl"), "".join(json.dumps(r) + "\n" for r in rows))

    def load_scores(self, score_key: str) -> dict | None:
        path = self._path("scores", score_key, ".json")
        return json.loads(path.read_text()) if path.exists() else None

    def save_scores(self, score_key: str, record: dict) -> None:
        write_atomic(self._path("scores", score_key, ".json"), json.dumps(record))

    def load_point(self, point_key: str) -> dict | None:
        path = self._path("points", point_key, ".json")
        return json.loads(path.read_text()) if path.exists() else None

    def save_point(self, point_key: str, record: dict) -> None:
        write_atomic(self._path("points", point_key, ".json"), json.dumps(record, indent=1))
