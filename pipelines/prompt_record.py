"""One prompt of a prompt set, as every source gives it (a prompt file, a dataset, the demo's templates)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    prompt: str
