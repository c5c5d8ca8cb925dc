"""What every preparation shares: duplicate removal, a fixed choice of held-out rows, the files and their record."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lines.atomic import write_json, write_jsonl

from ..errors import PipelineError
from ..prompts import split_key


def dedup_key(text: str) -> str:
    """Prompts equal up to whitespace are one prompt (case and punctuation count)."""
    return " ".join(text.split())


def drop_duplicates(rows: list[dict], field: str, seen: set[str] | None = None) -> tuple[list[dict], int]:
    """(rows whose `field` was not seen before — in `seen` or earlier in `rows` —, how many were dropped). The
    first occurrence is kept; `seen` (if given) is not modified."""
    seen = set(seen or ())
    kept = []
    for row in rows:
        key = dedup_key(row[field])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept, len(rows) - len(kept)


def take_by_hash(rows: list[dict], n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(the n rows first in sha256("<seed>:<id>") order, the others), each in input order: a choice that depends on
    the ids and the seed only."""
    chosen = {row["id"] for row in sorted(rows, key=lambda row: split_key(seed, row["id"]))[:n]}
    return [r for r in rows if r["id"] in chosen], [r for r in rows if r["id"] not in chosen]


KINDS = ("train_prompts", "eval_prompts", "held_out")


def prepared_paths(name: str, out: Path) -> dict[str, Path]:
    """The files a preparation named `name` writes under `out`, and its record."""
    return {kind: out / f"{name}_{kind}.jsonl" for kind in KINDS} | {"record": out / f"{name}_prepare.json"}


@dataclass
class Prepared:
    """The files of one preparation: name → rows, and the record written beside them."""

    name: str                               # file prefix, e.g. "hh"
    files: dict[str, list[dict]]            # e.g. {"train_prompts": [...], "eval_prompts": [...], "held_out": [...]}
    record: dict = field(default_factory=dict)

    def paths(self, out: Path) -> dict[str, Path]:
        return prepared_paths(self.name, out)


def check_writable(out: Path, name: str, force: bool) -> None:
    """Before any work: `out` can hold the files, and none of them is replaced unasked."""
    if out.exists() and not out.is_dir():
        raise PipelineError(f"--out '{out}' is a file; give a directory (it is created if missing)")
    existing = [p for p in prepared_paths(name, out).values() if p.exists()]
    if existing and not force:
        raise PipelineError(f"'{existing[0]}' already exists; remove it or pass --force to replace the prepared files")


def write_prepared(prepared: Prepared, out: Path) -> dict[str, Path]:
    """Every file, each written atomically, after every row is known (bad input writes nothing)."""
    paths = prepared.paths(out)
    out.mkdir(parents=True, exist_ok=True)
    for kind, rows in prepared.files.items():
        write_jsonl(paths[kind], rows)
    counts = {kind: len(rows) for kind, rows in prepared.files.items()}
    write_json(paths["record"], {**prepared.record, "files": {kind: paths[kind].name for kind in prepared.files},
                                 "rows": counts}, indent=2)
    return paths


def require_rows(rows: list, what: str, needed: int, hint: str) -> None:
    if len(rows) < needed:
        raise PipelineError(f"{what}: {len(rows)} rows, at least {needed} needed; {hint}")
