"""Where a job's time goes: wall seconds per stage (sampling DPO pairs, training steps, merges, generation, scoring),
each stage's own time only (a stage timed inside another is subtracted from the outer one). The job writes them to
runs/<name>/timings.json (benchmarks/real_stage_timings.py reads them)."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

_seconds: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_stack: list[list] = []  # [stage, seconds spent in stages inside it]


@contextmanager
def timed(stage: str) -> Iterator[None]:
    start = time.perf_counter()
    _stack.append([stage, 0.0])
    try:
        yield
    finally:
        _, inner = _stack.pop()
        elapsed = time.perf_counter() - start
        _seconds[stage] += elapsed - inner
        _calls[stage] += 1
        if _stack:
            _stack[-1][1] += elapsed


def snapshot() -> dict:
    return {stage: {"seconds": round(_seconds[stage], 2), "calls": _calls[stage]} for stage in _seconds}


def reset() -> None:
    _seconds.clear()
    _calls.clear()
