"""benchmarks/study_tables.py prints the README's study tables from a pooled.json, values and verdicts unchanged."""
import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "study_tables.py"
spec = importlib.util.spec_from_file_location("study_tables", SCRIPT)
study_tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study_tables)

POOLED = {
    "seeds": [0, 1], "level": 0.95,
    "hypervolume": [
        {"a": "lines", "b": "soup", "per_seed": {"0": 0.2, "1": 0.1}, "estimate": 0.15, "low": 0.01, "high": 0.3,
         "direction": 1},
        {"a": "lines", "b": "uniform", "per_seed": {"0": -0.2, "1": 0.05}, "estimate": -0.075, "low": -0.3,
         "high": 0.1, "direction": 0},
        {"a": "lines", "b": "matched[lines]", "per_seed": {"0": -0.2, "1": -0.1}, "estimate": -0.15, "low": -0.25,
         "high": -0.02, "direction": -1},
    ],
    "metrics": [
        {"a": "lines", "b": "soup", "metric": "ppl_control", "estimate": 0.0123, "low": -0.001, "high": 0.02},
        {"a": "lines", "b": "soup", "metric": "kl", "estimate": -1.234, "low": -2.0, "high": -0.5},
    ],
}


def test_hypervolume_rows_carry_each_seed_the_pooled_estimate_and_the_interval_s_verdict():
    assert study_tables.hypervolume_rows(POOLED) == [
        "| lines − soup | +0.200 | +0.100 | +0.150 | +0.010 … +0.300 | LiNeS better |",
        "| lines − uniform | −0.200 | +0.050 | −0.075 | −0.300 … +0.100 | no clear difference |",
        "| lines − matched[lines] | −0.200 | −0.100 | −0.150 | −0.250 … −0.020 | LiNeS worse |",
    ]


def test_closeness_rows_put_each_metric_in_its_column():
    assert study_tables.closeness_rows(POOLED) == [
        "| lines − soup | −1.23 (−2.00 … −0.50) |  | +0.012 (−0.001 … +0.020) |  |"]
