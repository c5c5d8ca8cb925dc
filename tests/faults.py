"""Counts of the faults the suite injects (SIGKILL at seeded moments of a stage, then a re-run) and their outcome,
printed at the end of the pytest run and written beside the hostile-input counts (conftest.py), for
benchmarks/what_is_checked.py.

Outcomes: `cut` — the kill landed before the stage finished, and the re-run reached the uninterrupted run's results
(recorded only after the test's comparisons passed); `finished first` — the stage was done before the kill moment.
"""
from __future__ import annotations

from collections import defaultdict

CUT, FINISHED_FIRST = "cut", "finished first"
FAULTS: dict[str, dict[str, int]] = defaultdict(lambda: {CUT: 0, FINISHED_FIRST: 0})


def record_kills(stage: str, cut: list[bool]) -> None:
    """One stage's kill attempts (True: the attempt was cut short), after its resumed results were checked."""
    FAULTS[stage][CUT] += sum(cut)
    FAULTS[stage][FINISHED_FIRST] += len(cut) - sum(cut)


def summary_line() -> str | None:
    if not FAULTS:
        return None
    cut = sum(v[CUT] for v in FAULTS.values())
    first = sum(v[FINISHED_FIRST] for v in FAULTS.values())
    parts = ", ".join(f"{stage} {v[CUT]}" for stage, v in sorted(FAULTS.items()))
    return (f"faults injected: {cut} kills (SIGKILL) cut a stage short ({parts}), each re-run reached the "
            f"uninterrupted results; {first} attempts finished before their kill moment")


# Other faults of the machine (a full disk, damaged cache files, a second job, signals): kind → outcome counts.
MACHINE: dict[str, dict[str, int]] = defaultdict(lambda: {CUT: 0, FINISHED_FIRST: 0})


def record_faults(stage: str, kind: str, cut: list[bool]) -> None:
    """Faults of `kind` injected into `stage` (True: the fault cut it short), after its re-run's results were
    checked against an uninterrupted run's."""
    MACHINE[f"{kind}: {stage}"][CUT] += sum(cut)
    MACHINE[f"{kind}: {stage}"][FINISHED_FIRST] += len(cut) - sum(cut)


def machine_summary_line() -> str | None:
    if not MACHINE:
        return None
    parts = ", ".join(f"{name} {v[CUT]}" for name, v in sorted(MACHINE.items()))
    return f"machine faults injected: {sum(v[CUT] for v in MACHINE.values())} cut a job short ({parts}), each ended " \
           f"in one line and its re-run reached the uninterrupted results"
