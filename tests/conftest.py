"""Tests import tests/tiny.py as `tiny`; everything runs offline on CPU."""
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
# Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning threads make
# each small matmul orders of magnitude slower. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))


def pytest_terminal_summary(terminalreporter):
    """The hostile-input suite's counts (tests/hostile.py), when it ran: printed, and written as JSON to the file
    LINES_CHECKED_JSON names (read by benchmarks/what_is_checked.py)."""
    hostile = sys.modules.get("hostile")
    line = hostile.summary_line() if hostile is not None else None
    if line is None:
        return
    terminalreporter.write_sep("-", "what was checked")
    terminalreporter.write_line(line)
    if os.environ.get(hostile.COUNTS_ENV):
        hostile.write_counts(os.environ[hostile.COUNTS_ENV])
        terminalreporter.write_line(f"counts written to {os.environ[hostile.COUNTS_ENV]}")
