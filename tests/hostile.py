"""The hostile-input suite's shared parts: running an entry point on one bad input, and counting the outcomes.

Every hostile test feeds an input to a real entry point (`lines merge`, `merge_policies.py --check`, a loader) and
classifies what happened:
  refused   — exit status 2, exactly one `error: ...` line on stderr, nothing left in the output location;
  accepted  — the input was valid after all (a mutation can land on a valid value) and the entry point succeeded;
  violation — anything else: a traceback (an exception other than UserError), several lines, a zero exit with an
              error, or files left behind. The test fails on the first one.
The counts per category are printed at the end of the pytest run (conftest.py) and, when LINES_CHECKED_JSON names
a file, written there as JSON for benchmarks/what_is_checked.py.
"""
from __future__ import annotations

import contextlib
import io
import os
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Callable

from hypothesis import HealthCheck, settings

from lines.errors import UserError

REFUSED, ACCEPTED, VIOLATION = "refused", "accepted", "violation"
COUNTS: dict[str, dict[str, int]] = defaultdict(lambda: {REFUSED: 0, ACCEPTED: 0, VIOLATION: 0})
COUNTS_ENV = "LINES_CHECKED_JSON"

# One fixed profile, the same on every machine: derandomized (the same examples every run of the same command, so
# CI never flakes), no example database written, no deadline (a shared 2-core machine is slow at times; the bounded
# example counts keep each property well under a minute). Hypothesis also mixes in constants it finds in the
# project modules already imported, so a property can draw other examples alone (`pytest -k`) than in the whole
# suite; a failure prints its example and a @reproduce_failure blob to replay it anywhere.
settings.register_profile("lines-ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                 HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.load_profile("lines-ci")


def record(category: str, outcome: str) -> None:
    COUNTS[category][outcome] += 1


def run_entry_point(category: str, call: Callable[[], int], output: Path | None = None,
                    must_refuse: bool = False) -> tuple[str, str]:
    """Run `call` (an entry point's main returning its exit status) on one input; returns (outcome, stderr).

    Checks the contract above and records the outcome under `category`; raises AssertionError on a violation.
    `output`: the file or directory the entry point would write; it must not exist after a refusal, and no
    temporary sibling (".<name>...") may be left. `must_refuse`: the input is known to be bad."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = call()
    except SystemExit as exc:  # argparse and scripts may exit instead of returning
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        record(category, VIOLATION)
        raise AssertionError(f"{category}: traceback instead of one error line:\n{traceback.format_exc()}")
    text = err.getvalue().strip()
    problems = []
    if code == 0:
        if must_refuse:
            problems.append("a bad input was accepted")
        outcome = ACCEPTED
    else:
        error_lines = [line for line in text.splitlines() if line.startswith("error: ")]
        if code != 2 or len(error_lines) != 1:
            problems.append(f"exit {code} with {len(error_lines)} error lines")
        if "Traceback" in text:
            problems.append("a traceback was printed")
        if output is not None and leftovers(output):
            problems.append(f"left behind {leftovers(output)}")
        outcome = REFUSED
    if problems:
        record(category, VIOLATION)
        raise AssertionError(f"{category}: {'; '.join(problems)}; stderr:\n{text}")
    record(category, outcome)
    return outcome, text


def refused_by(category: str, call: Callable[[], object]) -> str:
    """For library calls that raise instead of exiting: `call` must raise a UserError with a one-line message;
    returns the message (counted as refused), anything else is a violation."""
    try:
        call()
    except UserError as exc:
        message = str(exc)
        if "\n" in message or not message:
            record(category, VIOLATION)
            raise AssertionError(f"{category}: error message is not one line: {message!r}")
        record(category, REFUSED)
        return message
    except BaseException:
        record(category, VIOLATION)
        raise AssertionError(f"{category}: traceback instead of one error line:\n{traceback.format_exc()}")
    record(category, VIOLATION)
    raise AssertionError(f"{category}: a bad input was accepted")


def leftovers(output: Path) -> list[str]:
    """What an entry point left at `output`: the output itself, or a temporary sibling named after it."""
    output = Path(output)
    if not output.parent.is_dir():
        return []
    return sorted(p.name for p in output.parent.iterdir()
                  if p.name == output.name or p.name.startswith(f".{output.name}"))


def summary_line() -> str | None:
    """e.g. 'hostile inputs: 1240 tried (recipes 400, ...), 1180 refused with one line, 60 accepted, 0 tracebacks'."""
    if not COUNTS:
        return None
    tried = {c: sum(v.values()) for c, v in COUNTS.items()}
    total = sum(tried.values())
    refused = sum(v[REFUSED] for v in COUNTS.values())
    accepted = sum(v[ACCEPTED] for v in COUNTS.values())
    violations = sum(v[VIOLATION] for v in COUNTS.values())
    parts = ", ".join(f"{c} {n}" for c, n in sorted(tried.items()))
    return (f"hostile inputs: {total} tried ({parts}); {refused} refused with one error line, {accepted} accepted "
            f"as valid, {violations} tracebacks or other violations")
