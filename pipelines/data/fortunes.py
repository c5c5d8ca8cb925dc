"""A control domain of another genre: the BSD fortune(6) quotations, jokes and riddles (Debian `fortunes-min`,
BSD licence, /usr/share/games/fortunes) → held-out texts for perplexity on text no reward touches.

Every entry (the text between `%` lines, whitespace inside lines kept, attribution lines included) of the files
`fortunes`, `literature` and `riddles` is read; empty entries and duplicates are dropped; `held_out` entries chosen by
sha256("<seed>:<id>") are written (all of them when fewer), id "<file>/<entry index>". No prompt file: nothing is
trained or evaluated on this text.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import PipelineError
from .rows import Prepared, drop_duplicates, require_rows, take_by_hash

DIRECTORY = Path("/usr/share/games/fortunes")
FILES = ("fortunes", "literature", "riddles")
INSTALL = "make control-text (apt-get install fortunes-min)"


def entries(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    parts = [part.strip("\n") for part in text.split("\n%\n")]
    return [p.rstrip() for p in parts if p.strip() and p.strip() != "%"]


def prepare_fortunes(held_out: int = 500, seed: int = 0, source: str | None = None,
                     cache_dir: str | None = None) -> Prepared:
    directory = Path(source) if source else DIRECTORY
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise PipelineError(f"{directory / missing[0]} is missing; run {INSTALL} or give --source a directory "
                            "holding the fortune files")
    rows = [{"id": f"{name}/{i}", "text": text} for name in FILES for i, text in enumerate(entries(directory / name))]
    rows, duplicates = drop_duplicates(rows, "text")
    require_rows(rows, "fortune entries", 1, f"check {directory}")
    held, _ = take_by_hash(rows, min(held_out, len(rows)), seed)
    record = {"dataset": "BSD fortune(6) files: fortunes, literature, riddles (Debian fortunes-min)",
              "licence": "BSD (Regents of the University of California; see /usr/share/doc/fortunes-min/copyright)",
              "source": str(directory), "seed": seed,
              "rules": {"held_out": f"{held_out} entries chosen by sha256('<seed>:<id>') (all when fewer); an entry is "
                                    "the text between '%' lines"},
              "read": {"entries": len(rows) + duplicates}, "dropped": {"duplicates": duplicates}}
    return Prepared("fortunes", {"held_out": held}, record)
