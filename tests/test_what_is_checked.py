"""The README's "What is checked" numbers come from the suite: the counts file a run writes, and its table rows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from what_is_checked import hostile_input_rows  # noqa: E402


def test_rows_add_up_per_category_and_in_total():
    counts = {"pickles": {"refused": 3, "accepted": 0, "violation": 0},
              "recipes": {"refused": 250, "accepted": 48, "violation": 2},
              "something new": {"refused": 1, "accepted": 0, "violation": 0}}
    rows = hostile_input_rows(counts)
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]
    assert [c[1:] for c in cells] == [["300", "250", "48", "2"], ["3", "3", "0", "0"], ["1", "1", "0", "0"],
                                      ["**304**", "**254**", "**48**", "**2**"]]
    assert cells[0][0].startswith("merge recipes") and cells[2][0] == "something new"


@pytest.mark.slow
def test_a_suite_run_writes_its_counts_where_the_environment_says(tmp_path):
    counts_file = tmp_path / "checked.json"
    env = {**os.environ, "LINES_CHECKED_JSON": str(counts_file), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/test_hostile_checkpoints.py", "-k", "malicious_pickle_never_runs_through_lines"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "hostile inputs: 2 tried (pickles 2); 2 refused with one error line" in result.stdout
    assert json.loads(counts_file.read_text()) == {"hostile_inputs": {"pickles": {"refused": 2, "accepted": 0,
                                                                                  "violation": 0}}}
