"""Every trl config field reachable through `trainer:`: checked against the class for the stage before any work,
passed to the trainer under the project's own settings, and seen by the trainer (its arguments, TensorBoard events)."""
from __future__ import annotations

import json

import pytest
from trl import DPOConfig, GRPOConfig, RLOOConfig, SFTConfig

from pipelines.config.checks import check_environment
from pipelines.config.load import parse_config
from pipelines.config.training import SFTSpec, policy_settings
from pipelines.training import TrainingError, train_all
from pipelines.training.trainer_args import trainer_config
from train_helpers import one_torch_thread, tiny_base, tiny_config  # noqa: F401


def settings_with(tmp_path, algorithm="dpo", **trainer):
    data = tiny_config(tmp_path, tmp_path)
    data["training"].update(algorithm=algorithm, max_grad_norm=0.37, trainer=trainer)
    (_, settings), = policy_settings(parse_config(data, "cfg.yaml"))
    return settings


@pytest.mark.parametrize("algorithm,config_cls", [("dpo", DPOConfig), ("rloo", RLOOConfig), ("grpo", GRPOConfig)])
def test_trainer_fields_reach_the_config_under_the_projects_own(tmp_path, algorithm, config_cls):
    settings = settings_with(tmp_path, algorithm, adam_beta2=0.95, report_to="tensorboard", dataloader_num_workers=1,
                             lr_scheduler_kwargs={"num_cycles": 2})
    args = trainer_config(config_cls, algorithm, settings, tmp_path / "trainer", 3, "cfg.yaml")
    assert args.adam_beta2 == 0.95 and args.report_to == ["tensorboard"] and args.dataloader_num_workers == 1
    assert args.lr_scheduler_kwargs == {"num_cycles": 2}
    # The project's settings are the trainer's: from the block (max_grad_norm, learning_rate) and the stage (beta).
    assert args.max_grad_norm == 0.37 and args.learning_rate == settings.learning_rate and args.beta == settings.beta
    assert args.save_strategy == "no" and args.seed == 3


def test_stage_defaults_apply_where_trainer_is_silent(tmp_path):
    args = trainer_config(SFTConfig, "sft", SFTSpec(init={"model_type": "llama"}, max_length=32), tmp_path, 0,
                          "cfg.yaml")
    assert args.report_to == [] and args.packing is False and args.dataloader_num_workers == 0
    assert args.max_length == 32 and args.dataset_text_field == "text"


def test_a_field_the_stage_sets_must_be_declared(tmp_path):
    settings = settings_with(tmp_path)
    with pytest.raises(AssertionError, match="declared"):
        trainer_config(DPOConfig, "dpo", settings, tmp_path, 0, "cfg.yaml", adam_beta1=0.8)


@pytest.mark.parametrize("place,trainer,message", [
    ("training", {"max_grad_nrom": 0.5},
     "cfg.yaml: policies[0].training: field 'trainer.max_grad_nrom' is not a field of trl's DPOConfig (trl "),
    ("training", {"max_grad_norm": 0.5},
     "cfg.yaml: policies[0].training: field 'trainer.max_grad_norm': the stage sets max_grad_norm from the setting "
     "`max_grad_norm`; set that instead"),
    ("training", {"output_dir": "elsewhere"}, "field 'trainer.output_dir': the stage sets output_dir itself"),
    ("training", {"beta": 0.5}, "field 'trainer.beta': the stage sets beta from the setting `beta`"),
    ("training", {"adam_beta2": "high"},
     "field 'trainer.adam_beta2': Input should be a valid number, unable to parse string as a number (trl's "
     "DPOConfig declares float); fix that value"),
    ("training", {"optim": "nosuch"}, "field 'trainer': trl's DPOConfig refuses these values: nosuch is not a valid"),
    ("policy", {"num_generations": 8},
     "cfg.yaml: policies[0].training: field 'trainer.num_generations': the stage sets num_generations from the setting "
     "`rl.num_generations`"),
    ("sft", {"max_length": 64}, "cfg.yaml: base.sft.training: field 'trainer.max_length': the stage sets max_length "
                                "from the setting `base.sft.max_length`"),
    ("sft", {"packing_strategy": "wrapped", "optimm": "x"}, "field 'trainer.optimm' is not a field of trl's SFTConfig"),
])
def test_a_bad_trainer_field_is_one_line_naming_the_block(tmp_path, place, trainer, message):
    data = tiny_config(tmp_path, tmp_path)
    if place == "training":
        data["training"]["trainer"] = trainer
    elif place == "policy":  # an override of one policy, for its own algorithm
        data["policies"] = [{"reward": "long", "training": {"algorithm": "grpo", "trainer": trainer}}]
    else:
        data["base"] = {"sft": {"init": {"model_type": "llama"}, "training": {"trainer": trainer}}}
    with pytest.raises(TrainingError) as err:
        parse_config(data, "cfg.yaml")
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_fields_are_checked_with_the_values_the_project_sets_beside_them(tmp_path):
    """GRPO's generation batch must hold whole groups of rl.num_generations completions: 4 is right with the
    project's num_generations of 4 (trl's default, 8, would refuse it), 6 is not."""
    data = tiny_config(tmp_path, tmp_path)
    data["training"].update(algorithm="grpo", trainer={"generation_batch_size": 4})
    parse_config(data, "cfg.yaml")
    data["training"]["trainer"] = {"generation_batch_size": 6}
    with pytest.raises(TrainingError, match="GRPOConfig refuses these values: generation_batch_size \\(6\\) must be divisible"):
        parse_config(data, "cfg.yaml")


def test_report_to_an_integration_not_installed_is_refused_before_work(tmp_path, monkeypatch):
    import transformers.integrations

    data = tiny_config(tmp_path, tmp_path)
    data["training"]["trainer"] = {"report_to": ["tensorboard"]}
    config = parse_config(data, "cfg.yaml")
    check_environment(config)  # installed here (the pipeline extra)
    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: [])
    with pytest.raises(TrainingError, match="field 'trainer.report_to': tensorboard is not installed here; install "
                                            r"tensorboard \(in the pipeline extra\)"):
        check_environment(config)
    data["training"]["trainer"] = {"report_to": "tensorbord"}
    with pytest.raises(TrainingError, match="unknown integration 'tensorbord'; use one of"):
        check_environment(parse_config(data, "cfg.yaml"))


def test_trainer_fields_reach_the_trainer_and_its_tensorboard_events(tiny_base, tmp_path):
    """DPO on the tiny θ0 with `report_to: tensorboard` and a field the project has no setting for: the event file
    under runs/<run>/logs/<policy>/ holds the trainer's arguments (transformers writes them as text) and the loss."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tiny_config(tmp_path, tiny_base)
    data["training"].update(max_grad_norm=0.37, trainer={"report_to": "tensorboard", "adam_beta2": 0.95})
    config = parse_config(data, "cfg.yaml")
    check_environment(config)
    info = train_all(config)["long"]

    events = sorted((config.run_dir / "logs" / "long").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    accumulator = EventAccumulator(str(events[0].parent)).Reload()
    args = json.loads(accumulator.Tensors("args/text_summary")[0].tensor_proto.string_val[0])
    assert args["adam_beta2"] == 0.95 and args["max_grad_norm"] == 0.37 and args["report_to"] == ["tensorboard"]
    assert [event.step for event in accumulator.Scalars("train/loss")] == [1, 2, 3]
    manifest = json.loads((info.path / "manifest.json").read_text())
    assert manifest["hyperparameters"]["trainer"] == {"report_to": "tensorboard", "adam_beta2": 0.95}
    assert not (config.run_dir / "work" / "long").exists()  # the scratch space went; the logs stay
