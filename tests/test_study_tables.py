"""benchmarks/study_tables.py writes the study's tables into docs/results.md from a pooled.json, values and verdicts
unchanged."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "study_tables.py"
sys.path.insert(0, str(SCRIPT.parent))
from marked_regions import region  # noqa: E402
spec = importlib.util.spec_from_file_location("study_tables", SCRIPT)
study_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study_tables)

POOLED = {
    "seeds": [0, 1], "level": 0.95, "margin": 0.02,
    "hypervolume": [
        {"a": "lines", "b": "soup", "per_seed": {"0": 0.2, "1": 0.1}, "estimate": 0.15, "low": 0.01, "high": 0.3,
         "sign_flip_p": 0.004, "holm_p": 0.012, "verdict": "a better"},
        {"a": "lines", "b": "uniform", "per_seed": {"0": -0.2, "1": 0.05}, "estimate": -0.075, "low": -0.3,
         "high": 0.1, "sign_flip_p": 0.5, "holm_p": None, "verdict": None},
        {"a": "lines", "b": "matched[lines]", "per_seed": {"0": -0.2, "1": -0.1}, "estimate": -0.15, "low": -0.25,
         "high": -0.02, "sign_flip_p": 0.25, "holm_p": 0.5, "verdict": "not shown"},
    ],
    "matched_kl": [{"a": "lines", "b": "soup", "per_seed": {"0": 0.1, "1": -0.05}, "mean": 0.025, "low": -0.9,
                    "high": 0.95, "sign_flip_p": 1.0}],
    "metrics": [
        {"a": "lines", "b": "soup", "metric": "ppl_control", "estimate": 0.0123, "low": -0.001, "high": 0.02},
        {"a": "lines", "b": "soup", "metric": "kl", "estimate": -1.234, "low": -2.0, "high": -0.5},
    ],
}


def test_hypervolume_rows_carry_each_seed_the_pooled_estimate_and_the_interval_s_verdict():
    assert study_tables.hypervolume_rows(POOLED) == [
        "| lines − soup | +0.200 | +0.100 | +0.150 | +0.010 … +0.300 | 0.004 | 0.012 | lines better |",
        "| lines − uniform | −0.200 | +0.050 | −0.075 | −0.300 … +0.100 | 0.500 | — | estimate only |",
        "| lines − matched[lines] | −0.200 | −0.100 | −0.150 | −0.250 … −0.020 | 0.250 | 0.500 | not shown |",
    ]
    assert study_tables.matched_kl_rows(POOLED) == [
        "| lines − soup | +0.100 | −0.050 | +0.025 | −0.900 … +0.950 | 1.000 |"]


def test_closeness_rows_put_each_metric_in_its_column():
    assert study_tables.closeness_rows(POOLED) == [
        "| lines − soup | −1.23 (−2.00 … −0.50) |  | +0.012 (−0.001 … +0.020) |  |"]


def test_the_tables_start_with_a_header_naming_each_seed_and_metric():
    assert study_tables.hypervolume_table(POOLED)[:2] == [
        "| comparison | seed 0 | seed 1 | mean | 95% t-interval | sign-flip p | Holm p | verdict |",
        "|---|---|---|---|---|---|---|---|"]
    assert study_tables.closeness_table(POOLED)[:2] == [
        "| comparison | KL of the responses | perplexity, reviews | perplexity, control | per-token KL, control |",
        "|---|---|---|---|---|"]


def test_write_replaces_the_study_regions_of_the_page_and_nothing_else(tmp_path):
    pooled = tmp_path / "pooled.json"
    pooled.write_text(json.dumps(POOLED))
    page = tmp_path / "results.md"
    page.write_text("# Results\n\nintro\n<!-- begin: study-hypervolume -->\nold\n<!-- end: study-hypervolume -->\n"
                    "<!-- begin: study-matched-kl -->\n<!-- end: study-matched-kl -->\n"
                    "between\n<!-- begin: study-closeness -->\n<!-- end: study-closeness -->\nafter\n")
    study_tables.main([str(pooled), "--write", str(page)])
    assert page.read_text() == (
        "# Results\n\nintro\n<!-- begin: study-hypervolume -->\n"
        + "\n".join(study_tables.hypervolume_table(POOLED)) + "\n<!-- end: study-hypervolume -->\n"
        "<!-- begin: study-matched-kl -->\n" + "\n".join(study_tables.matched_kl_table(POOLED))
        + "\n<!-- end: study-matched-kl -->\nbetween\n"
        "<!-- begin: study-closeness -->\n" + "\n".join(study_tables.closeness_table(POOLED))
        + "\n<!-- end: study-closeness -->\nafter\n")


def test_write_refuses_a_page_without_the_regions(tmp_path):
    pooled = tmp_path / "pooled.json"
    pooled.write_text(json.dumps(POOLED))
    page = tmp_path / "results.md"
    page.write_text("# Results\n<!-- begin: study-hypervolume -->\n<!-- end: study-hypervolume -->\n")
    with pytest.raises(SystemExit, match="region 'study-(matched-kl|closeness)' is marked 0 times"):
        study_tables.main([str(pooled), "--write", str(page)])
    assert page.read_text().endswith("<!-- end: study-hypervolume -->\n")


def test_the_results_page_has_the_study_tables_as_the_script_writes_them():
    """The study's tables in docs/results.md have the script's header and row format (the pooled.json they came
    from is a run's output, not in the tree)."""
    text = (ROOT / "docs" / "results.md").read_text()
    hypervolume = region(text, "study-hypervolume").splitlines()
    closeness = region(text, "study-closeness").splitlines()
    seeds = [c.removeprefix("seed ") for c in hypervolume[0].strip("| ").split(" | ") if c.startswith("seed ")]
    assert hypervolume[:2] == study_tables.hypervolume_table({"seeds": seeds, "level": 0.95, "hypervolume": []})
    assert closeness[:2] == study_tables.closeness_table({"metrics": []})
    assert len(hypervolume) > 2 and len(closeness) > 2
