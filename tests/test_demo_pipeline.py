"""The whole main job on a reduced demo: SFT θ0 → two DPO policies → sweep → report, as CI runs on every push."""
import json
from pathlib import Path

import pytest

from browser import browser_available, check_report, start_browser
from pipelines.merge_policies import main

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
REDUCED = [
    "training.base.sft.training.max_steps=30", "training.base.sft.data.n=600",
    "training.prompts.n_train=16", "training.prompts.n_eval=8",
    "training.training.max_steps=4", "training.training.dpo.samples_per_prompt=4",
    "training.training.dpo.max_new_tokens=16", "training.evaluation.max_new_tokens=16",
    "training.evaluation.samples_per_prompt=1",
    "prompts.n_validation=6", "prompts.n_eval=12", "generation.max_new_tokens=16",
    "sweep.points=3", "sweep.validation_points=null", "sweep.variants=[{name: soup, method: linear}, "
    "{name: lines, method: linear, lines: {alpha: auto, beta_grid: [0.5, 1.0]}}]",
    "sweep.uniform_control.lambda_grid=[1.25, 1.5]",
    "forgetting.gamma_grid=[0.0, 1.0]", "bootstrap.samples=50",
]


@pytest.mark.slow
def test_reduced_demo_end_to_end(tmp_path):
    assert main(["--config", str(CONFIG), "--quiet", "--set", f"output_dir={tmp_path}", *sum(
        (["--set", s] for s in REDUCED), [])]) == 0
    run = tmp_path / "demo"
    for policy in ["positive", "long"]:
        manifest = json.loads((run / "policies" / policy / "manifest.json").read_text())
        assert manifest["reward"] == policy
    plan = json.loads((run / "sweep" / "plan.json").read_text())
    assert set(plan["selection"]) == {"lines", "uniform"}
    points = [json.loads(line) for line in (run / "sweep" / "points.jsonl").open()]
    fronts = {p["front"] for p in points}
    assert {"soup", "base", "policy[positive]", "policy[long]"} <= fronts
    assert any(f.startswith("lines[") for f in fronts) and any(f.startswith("uniform[") for f in fronts)
    assert all(set(p["objectives"]) == {"positive", "long", "kl", "ppl_reviews", "ppl_control", "kl_control"}
               for p in points)
    assert any(f == "matched[lines]" for f in fronts)
    report = run / "report"
    assert (report / "report.md").read_text().count("## ") >= 5
    assert (report / "pareto.png").stat().st_size > 10_000
    # The page a reader opens, in a real browser (tests/test_report_explore.py checks it alone, or skips with the
    # reason where no browser is installed).
    if browser_available():
        driver = start_browser()
        try:
            check_report(driver, run)
        finally:
            driver.quit()
