"""Every shipped config validates against the schemas of the stages it feeds."""
from pathlib import Path

import pytest

from pipelines.errors import PipelineError
from pipelines.run_config import load_run_config
from pipelines.training import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "real_llama3_8b.yaml"])
def test_main_job_configs_validate(name):
    # The real-scale config names prompt files the user makes (and hub models): its paths are not checked here.
    cfg = load_run_config(CONFIGS / name, check_paths=name == "demo.yaml")
    assert [p.reward for p in cfg.train_config.policies] == cfg.reward_names


def test_training_demo_config_validates():
    assert load_config(CONFIGS / "train_demo.yaml").policies


def test_bad_main_config_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text((CONFIGS / "demo.yaml").read_text().replace("points: 9 ", "points: 1 "))
    with pytest.raises(PipelineError, match=r"bad.yaml: field 'sweep.points'"):
        load_run_config(path)
    with pytest.raises(PipelineError, match="expected KEY=VALUE"):
        load_run_config(CONFIGS / "demo.yaml", ["sweep.points"])
    assert load_run_config(CONFIGS / "demo.yaml", ["sweep.points=5"]).sweep.points == 5
