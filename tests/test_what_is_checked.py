"""The numbers of what is checked come from the suite: the counts file a run writes, its table rows, and the
regions of docs/results.md the script writes them into."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import what_is_checked  # noqa: E402
from marked_regions import region  # noqa: E402
from what_is_checked import MUTATION_RESULTS, fault_rows, hostile_input_rows, mutation_rows  # noqa: E402

RESULTS_PAGE = ROOT / "docs" / "results.md"
REGIONS = ("hostile-inputs", "faults-injected", "machine-faults", "mutation-score")


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


COUNTS = {"hostile_inputs": {"pickles": {"refused": 2, "accepted": 0, "violation": 0}},
          "faults_injected": {"sweep": {"cut": 2, "finished first": 0}}}


def test_write_replaces_the_three_regions_and_leaves_the_rest_of_the_page(tmp_path):
    counts = tmp_path / "checked.json"
    counts.write_text(json.dumps(COUNTS))
    page = tmp_path / "results.md"
    page.write_text("# Results\n\n" + "".join(f"before {name}\n<!-- begin: {name} -->\nold | table\n<!-- end: {name} -->\n"
                                          for name in REGIONS) + "the end\n")
    assert what_is_checked.main(["--counts", str(counts), "--write", str(page)]) == 0
    text = page.read_text()
    assert region(text, "hostile-inputs") == "\n".join(hostile_input_rows(COUNTS["hostile_inputs"])) + "\n"
    assert region(text, "faults-injected") == "\n".join(fault_rows(COUNTS["faults_injected"])) + "\n"
    assert region(text, "mutation-score") == "\n".join(mutation_rows(json.loads(MUTATION_RESULTS.read_text()))) + "\n"
    assert text.startswith("# Results\n\nbefore hostile-inputs\n") and text.endswith("-->\nthe end\n")
    assert "old | table" not in text


def test_write_refuses_a_page_missing_a_region_and_leaves_it_unchanged(tmp_path):
    counts = tmp_path / "checked.json"
    counts.write_text(json.dumps(COUNTS))
    page = tmp_path / "results.md"
    page.write_text("<!-- begin: hostile-inputs -->\n<!-- end: hostile-inputs -->\n")
    with pytest.raises(SystemExit, match="region 'faults-injected' is marked 0 times"):
        what_is_checked.main(["--counts", str(counts), "--write", str(page)])
    assert page.read_text() == "<!-- begin: hostile-inputs -->\n<!-- end: hostile-inputs -->\n"


def test_the_results_page_shows_the_mutation_run_as_the_script_writes_it():
    assert region(RESULTS_PAGE.read_text(), "mutation-score") == (
        "\n".join(mutation_rows(json.loads(MUTATION_RESULTS.read_text()))) + "\n")


def test_the_results_page_s_count_tables_are_in_the_script_s_format():
    """The counts came from a suite run (not in the tree); their tables have the script's header and a total."""
    text = RESULTS_PAGE.read_text()
    assert region(text, "hostile-inputs").splitlines()[:2] == hostile_input_rows({})[:2]
    assert region(text, "faults-injected").splitlines()[:2] == fault_rows({})[:2]
    for name in ("hostile-inputs", "faults-injected"):
        assert region(text, name).splitlines()[-1].startswith("| **all** |")
