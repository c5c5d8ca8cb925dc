"""configs/demo_ppo.yaml: the demo with its policies trained by PPO, everything else the demo's own."""
import json
from pathlib import Path

import pytest

from pipelines.merge_policies import main
from pipelines.config.load import load_run_config
from test_demo_pipeline import REDUCED as DEMO_REDUCED

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_ppo_is_the_demo_but_for_how_its_policies_are_trained():
    demo = load_run_config(CONFIGS / "demo.yaml").model_dump(mode="json")
    ppo = load_run_config(CONFIGS / "demo_ppo.yaml").model_dump(mode="json")
    assert ppo["run_name"] == "demo_ppo" and ppo["training"]["training"]["algorithm"] == "ppo"
    for config in (demo, ppo):
        config.pop("run_name"), config["training"].pop("training")
    assert ppo == demo  # same θ0 recipe, rewards, metrics, prompts, sweep and report: the fronts are comparable


# The reduced demo of tests/test_demo_pipeline.py, with PPO's own training sizes.
REDUCED = [s for s in DEMO_REDUCED if not s.startswith("training.training.")] + [
    "training.training.max_steps=2", "training.training.per_device_batch_size=8",
    "training.training.rl.max_new_tokens=16"]


@pytest.mark.slow
def test_reduced_ppo_demo_end_to_end(tmp_path):
    assert main(["--config", str(CONFIGS / "demo_ppo.yaml"), "--quiet", "--set", f"output_dir={tmp_path}",
                 *sum((["--set", s] for s in REDUCED), [])]) == 0
    run = tmp_path / "demo_ppo"
    for policy in ["positive", "long"]:
        manifest = json.loads((run / "policies" / policy / "manifest.json").read_text())
        assert manifest["reward"] == policy and manifest["algorithm"] == "ppo"
    fronts = {json.loads(line)["front"] for line in (run / "sweep" / "points.jsonl").open()}
    assert {"soup", "base", "policy[positive]", "policy[long]"} <= fronts
    assert any(f.startswith("lines[") for f in fronts)
    assert (run / "report" / "report.md").read_text().count("## ") >= 5
    assert (run / "report" / "pareto.png").stat().st_size > 10_000


def test_check_counts_ppo_s_value_model_in_training_memory(capsys):
    assert main(["--config", str(CONFIGS / "demo_ppo.yaml"), "--check"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "memory per process" in line and "trained in full" in line)
    assert "θ0 trained in full + a frozen reference + a value model trained in full" in line
    assert main(["--config", str(CONFIGS / "demo.yaml"), "--check"]) == 0
    dpo = next(line for line in capsys.readouterr().out.splitlines() if "memory per process" in line and
               "trained in full" in line)

    def megabytes(text):
        return float(text.split("memory per process: ")[1].split(" MB")[0])

    # 16 bytes per trained parameter (policy and value model) + θ0 frozen in fp32: twice DPO's 16 + 4, minus 4.
    assert megabytes(line) > 1.4 * megabytes(dpo)
