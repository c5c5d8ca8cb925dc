"""The training config: schema, overrides, one-line errors with a non-zero exit, checks before any work."""
from __future__ import annotations

import pytest
import torch

from pipelines.train_policies import main
from lines.errors import UserError
from pipelines.config.checks import check_environment
from pipelines.config.load import load_config, parse_config
from pipelines.config.training import policy_settings
from pipelines.training import TrainingError, train_all
from train_helpers import REPO, TINY_LLAMA, one_torch_thread, tiny_base, tiny_config, write_config  # noqa: F401


def test_demo_config_validates_and_resolves_per_policy_settings():
    config = load_config(REPO / "configs" / "train_demo.yaml")
    assert [p.reward for p in config.policies] == ["positive", "long"]
    assert config.training.dpo.loss_type == ["sigmoid", "sft"]
    settings = dict((entry.reward, s) for entry, s in policy_settings(config))
    assert settings["positive"].algorithm == "dpo"
    check_environment(config)  # fp32 on this machine: must pass


def test_overrides_apply_yaml_values_at_dotted_paths():
    config = load_config(REPO / "configs" / "train_demo.yaml",
                         ["training.max_steps=5", "training.dpo.loss_type=[sigmoid]", "policies.1.reward=positive",
                          "policies.0.reward=long"])
    assert config.training.max_steps == 5
    assert config.training.dpo.loss_type == ["sigmoid"]
    assert [p.reward for p in config.policies] == ["long", "positive"]


def test_per_policy_overrides_are_deep_merged_and_validated(tmp_path):
    data = tiny_config(tmp_path, tmp_path, policies=[{"reward": "long", "training": {"dpo": {"rounds": 2}}}])
    config = parse_config(data, "cfg.yaml")
    (_, settings), = policy_settings(config)
    assert settings.dpo.rounds == 2 and settings.dpo.samples_per_prompt == 4  # merged, not replaced
    data["policies"][0]["training"] = {"dpo": {"rounds": 0}}
    with pytest.raises(TrainingError, match=r"cfg.yaml: policies\[0\].training: field 'dpo.rounds'"):
        parse_config(data, "cfg.yaml")


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["training"].update(learning_rate=-1), "field 'training.learning_rate'"),
    (lambda c: c["training"].update(lr=1e-3), "field 'training.lr' is not a setting"),
    (lambda c: c.update(policies=[{"reward": "helpful"}]), "'helpful' is not one of the rewards"),
    (lambda c: c["rewards"].append({"name": "long", "type": "length"}), "used twice"),
    (lambda c: c.update(base={}), "exactly one of `path`"),
    (lambda c: c["rewards"].append({"name": "x", "type": "sentiment"}), "field 'rewards.2.type': unknown reward type 'sentiment'"),
    (lambda c: c.update(morl={"weights": {"positive": 1, "nope": 1}}), "morl.weights names 'nope'"),
])
def test_bad_config_is_one_line_naming_file_and_field(tmp_path, mutate, message):
    data = tiny_config(tmp_path / "runs", tmp_path)
    mutate(data)
    with pytest.raises(TrainingError) as err:
        parse_config(data, "cfg.yaml")
    assert message in str(err.value) and str(err.value).startswith("cfg.yaml") and "\n" not in str(err.value)


def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    path = write_config(tmp_path / "bad.yaml", {**tiny_config(tmp_path / "runs", tmp_path),
                                                "training": {"max_steps": 0}})
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and "training.max_steps" in err and str(path) in err
    assert not (tmp_path / "runs").exists()
    (tmp_path / "syntax.yaml").write_text("run_name: [unclosed\n")
    assert main(["--config", str(tmp_path / "syntax.yaml")]) == 2
    assert "not valid YAML at line" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_ppo_passes_the_machine_check(tmp_path):
    check_environment(parse_config(tiny_config(tmp_path, tmp_path, training={"algorithm": "ppo"}), "cfg.yaml"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="mixed precision is allowed on a GPU")
def test_mixed_precision_on_cpu_is_refused_before_work(tmp_path):
    config = parse_config(tiny_config(tmp_path, tmp_path, training={"precision": "bf16"}), "cfg.yaml")
    with pytest.raises(TrainingError, match="precision bf16 needs a GPU"):
        check_environment(config)


def test_kl_metric_cannot_be_a_training_signal(tmp_path):
    data = tiny_config(tmp_path / "runs", tmp_path, policies=[{"reward": "kl"}])
    data["rewards"].append({"name": "kl", "type": "kl"})
    with pytest.raises(TrainingError, match=r"policies\[0\]: reward 'kl' is a metric .* cannot be a training signal"):
        parse_config(data, "cfg.yaml")


def test_loaded_policy_with_other_shapes_is_refused_before_training(tmp_path, tiny_base):
    from transformers import AutoConfig, AutoModelForCausalLM

    other = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", vocab_size=400,
                                                                  **{**TINY_LLAMA, "hidden_size": 48}))
    other.save_pretrained(str(tmp_path / "other"))
    data = tiny_config(tmp_path / "runs", tiny_base,
                       policies=[{"reward": "positive", "path": str(tmp_path / "other")}, {"reward": "long"}])
    with pytest.raises(TrainingError, match=r"policy 'positive': not compatible with θ0 .* shape"):
        train_all(parse_config(data, "cfg.yaml"))
    assert not (tmp_path / "runs" / "t" / "policies").exists()  # checked before anything was trained


def test_loaded_policy_path_must_exist(tmp_path, tiny_base):
    data = tiny_config(tmp_path / "runs", tiny_base, policies=[{"reward": "long", "path": str(tmp_path / "nope")}])
    with pytest.raises(TrainingError, match="does not exist"):
        train_all(parse_config(data, "cfg.yaml"))


def test_hub_id_without_hub_access_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tiny_config(tmp_path / "runs", None)
    data["base"] = {"path": "some-org/some-sft-model"}
    with pytest.raises(UserError, match="base.path: 'some-org/some-sft-model' is not a local path, and as a hub id "
                                        "it is not in the hub cache while the hub is offline"):
        train_all(parse_config(data, "cfg.yaml"))
