"""Every shipped config validates against the schemas of the stages it feeds."""
from pathlib import Path

import pytest

from pipelines.errors import PipelineError
from pipelines.generation.config import parse_generation_config
from pipelines.sweep.config import load_run_config
from pipelines.training import load_config, parse_config
from reward_models.config import parse_reward_spec

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["demo.yaml", "real_llama3_8b.yaml"])
def test_main_job_configs_validate(name):
    cfg = load_run_config(CONFIGS / name)
    train = parse_config({"rewards": cfg.rewards, **cfg.training, "run_name": cfg.run_name,
                          "output_dir": cfg.output_dir, "seed": cfg.seed}, name)
    assert [p.reward for p in train.policies] == cfg.reward_names
    for spec in cfg.rewards + cfg.metrics:
        parse_reward_spec(spec)
    parse_generation_config(cfg.generation)


def test_training_demo_config_validates():
    assert load_config(CONFIGS / "train_demo.yaml").policies


def test_bad_main_config_is_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text((CONFIGS / "demo.yaml").read_text().replace("points: 11", "points: 1"))
    with pytest.raises(PipelineError, match=r"bad.yaml: field 'sweep.points'"):
        load_run_config(path)
    with pytest.raises(PipelineError, match="expected KEY=VALUE"):
        load_run_config(CONFIGS / "demo.yaml", ["sweep.points"])
    assert load_run_config(CONFIGS / "demo.yaml", ["sweep.points=5"]).sweep.points == 5
