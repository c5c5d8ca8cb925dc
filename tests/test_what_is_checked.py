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
from what_is_checked import fault_rows, hostile_input_rows, mutation_rows  # noqa: E402


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
    assert json.loads(counts_file.read_text()) == {
        "hostile_inputs": {"pickles": {"refused": 2, "accepted": 0, "violation": 0}}, "faults_injected": {}}


def test_fault_rows_count_the_kills_that_cut_a_stage_short():
    rows = fault_rows({"sweep": {"cut": 2, "finished first": 1}, "lines merge": {"cut": 3, "finished first": 0}})
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]
    assert cells == [["sweep", "3", "2", "1"], ["lines merge", "3", "3", "0"], ["**all**", "**6**", "**5**", "**1**"]]


def test_mutation_rows_give_each_module_s_score_and_the_total():
    results = {"tool": "mutmut 3.8.1", "modules": {
        "a": {"file": "lines/a.py", "mutants": 10, "killed": 9, "survived": 1, "timeout": 0, "no_tests": 0},
        "b": {"file": "pipelines/b.py", "mutants": 4, "killed": 3, "survived": 0, "timeout": 1, "no_tests": 0}}}
    rows = mutation_rows(results)
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]
    # A mutant that made the tests time out counts as killed (the suite did not pass with it), as mutmut reports.
    assert cells == [["`lines/a.py`", "10", "9", "0", "1", "90.0%"], ["`pipelines/b.py`", "4", "3", "1", "0", "100.0%"],
                     ["**all**", "**14**", "**12**", "**1**", "**1**", "**92.9%**"]]
