"""Every shipped config validates against the schemas of the stages it feeds."""
from pathlib import Path

import pytest

from dataset_fixtures import prepared_workdir
from pipelines.errors import PipelineError
from pipelines.config.load import load_config, load_run_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def real_workdir(tmp_path_factory):
    """Where a user starts the real-scale job: its data files prepared (here from a local copy of hh-rlhf)."""
    return prepared_workdir(tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("hh-rlhf"))


@pytest.mark.parametrize("name", ["demo.yaml", "demo_ppo.yaml", "real_llama3_8b.yaml"])
def test_main_job_configs_validate_with_their_files(name, real_workdir, monkeypatch):
    # The real config's files exist once prepared; its hub models are checked as well-formed ids (they are fetched
    # where it runs), see tests/test_offline_check.py for --check itself.
    monkeypatch.chdir(real_workdir if name.startswith("real") else CONFIGS.parent)
    cfg = load_run_config(CONFIGS / name, hub_ids="well_formed")
    assert [p.reward for p in cfg.train_config.policies] == cfg.reward_names


def test_every_shipped_config_is_tested():
    tested = {"demo.yaml", "demo_ppo.yaml", "demo_real.yaml", "real_llama3_8b.yaml", "train_demo.yaml"}
    assert {p.name for p in CONFIGS.glob("*.yaml")} == tested


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


def test_real_config_validates_with_its_files(tmp_path, monkeypatch):
    """configs/demo_real.yaml with the files `make demo-real` prepares: the data made by `prepare chitchat` and
    `prepare fortunes` (from a small fortune directory here), θ0 a tiny stand-in at the path `prepare smollm2` fills."""
    import tiny
    from pipelines.data.__main__ import main

    fortunes = tmp_path / "fortunes"
    fortunes.mkdir()
    for name in ("fortunes", "literature", "riddles"):
        (fortunes / name).write_text(f"{name}: a saying of some length\n%\n{name}: another one\n")
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", "chitchat", "--out", "data/real", "--held-out", "8"]) == 0
    assert main(["prepare", "fortunes", "--out", "data/real", "--source", str(fortunes)]) == 0
    tiny.save(tiny.tiny_model("llama"), tmp_path / "runs" / "models" / "smollm2")
    cfg = load_run_config(CONFIGS / "demo_real.yaml")
    assert [p.reward for p in cfg.train_config.policies] == cfg.reward_names == ["concise", "lexicon"]
    assert {m.name for m in cfg.metrics} == {"kl", "profanity", "ppl_chitchat", "ppl_control"}
