"""The project's PPO on a tiny local θ0: the reward it is given is the reward it improves, in the direction given;
every reward type reaches it; β adapts by its rule; the policy is saved without the value model."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from lines.fingerprints import fingerprint as checkpoint_fingerprint
from pipelines.config.load import parse_config
from pipelines.training import TrainingError, train_all
from pipelines.training.checkpoints import load_tokenizer
from pipelines.config.checks import check_environment
from pipelines.training.ppo_config import PPOConfig
from pipelines.training.ppo_rollout import collect
from pipelines.training.rewards import build_reward_table
from lines.models import load_causal_lm
from reward_models.text_format import policy_prompt_ids
from tiny import tiny_reward_model_dir
from train_helpers import one_torch_thread, state_dict_of, tiny_base, tiny_config  # noqa: F401

UP = {"name": "up", "type": "callable", "target": "ppo_rewards:first_half_letters"}
DOWN = {"name": "down", "type": "callable", "target": "ppo_rewards:first_half_letters_negated"}


def ppo_training(**extra) -> dict:
    # Sized so that 8 rollout batches move the tiny random θ0 by several standard errors of its held-out mean
    # (measured over seeds 0-2, θ0 at 0.54 with standard error 0.02: +0.05 … +0.14 on the reward, −0.07 … −0.13 on
    # it for the policy trained on its negation; with the reward scoring the prompts instead of the responses, the two
    # policies drifted by +0.02 and +0.04, and these tests fail).
    return {"algorithm": "ppo", "learning_rate": 2e-2, "max_steps": 8, "per_device_batch_size": 8,
            "logging_steps": 1, "beta": 0.02, "max_length": 64, "rl": {"max_new_tokens": 12},
            "ppo": {"num_ppo_epochs": 4}, **extra}


@pytest.fixture(scope="module")
def up_and_down(tiny_base, tmp_path_factory):
    """Two full fine-tuned PPO policies from one θ0: one on a reward, one on the same reward with its sign flipped."""
    out = tmp_path_factory.mktemp("ppo")
    data = tiny_config(out, tiny_base, rewards=[UP, DOWN], policies=[{"reward": "up"}, {"reward": "down"}],
                       training=ppo_training(), prompts={"source": "demo", "n_train": 64, "n_eval": 16},
                       evaluation={"samples_per_prompt": 2, "max_new_tokens": 12, "batch_size": 32})
    return train_all(parse_config(data, "ppo.yaml"))


def held_out(info, reward: str) -> tuple[dict, dict]:
    evaluation = info.manifest["evaluation"]
    return evaluation["base"][reward], evaluation["policy"][reward]


@pytest.mark.slow  # PPO trains two policies (module fixture, ~30 s)
def test_ppo_policy_improves_its_own_reward_on_held_out_prompts(up_and_down):
    base, policy = held_out(up_and_down["up"], "up")
    assert policy["mean"] - base["mean"] > base["stderr"]
    assert up_and_down["up"].manifest["evaluation"]["difference"]["up"]["significant"]


@pytest.mark.slow  # shares the PPO training fixture
def test_a_reward_with_its_sign_flipped_moves_the_policy_the_other_way(up_and_down):
    base, policy = held_out(up_and_down["down"], "up")
    assert base["mean"] - policy["mean"] > base["stderr"]
    base, policy = held_out(up_and_down["down"], "down")  # its own reward, improved
    assert policy["mean"] - base["mean"] > base["stderr"]


@pytest.mark.slow  # shares the PPO training fixture
def test_ppo_manifest_records_the_algorithm_and_its_learning_curve(up_and_down):
    manifest = up_and_down["up"].manifest
    assert manifest["algorithm"] == "ppo" and manifest["hyperparameters"]["ppo"]["num_ppo_epochs"] == 4
    curve = manifest["training_curve"]
    assert [row["step"] for row in curve] == list(range(1, 9))
    # The reward reached the trainer (its own scale: a share in [0, 1]), and a value model was trained beside it.
    assert all(0 <= row["objective/scores"] <= 1 for row in curve)
    assert all(row["loss/value_avg"] > 0 for row in curve) and "objective/kl" in curve[-1]
    assert manifest["evaluation"]["policy"]["kl_to_base"]["mean"] > 0


@pytest.mark.slow  # shares the PPO training fixture
def test_the_saved_policy_is_theta0_s_architecture_without_the_value_model(up_and_down, tiny_base):
    info = up_and_down["up"]
    assert info.kind == "full" and info.checkpoint == info.path
    saved, base = state_dict_of(info.path), state_dict_of(tiny_base)
    assert saved.keys() == base.keys()  # no value head, no critic backbone, no wrapper prefixes
    assert all(saved[k].shape == base[k].shape for k in saved)
    assert json.loads((info.path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


@pytest.mark.slow  # a PPO training run
def test_ppo_lora_on_a_reward_model_with_its_own_tokenizer(tiny_base, tmp_path):
    """LoRA policy, reference = θ0 with the adapter off; the reward is an `hf` classifier reading text in its own
    tokenizer (it never sees the policy's token ids)."""
    rm_dir = tiny_reward_model_dir(tmp_path / "rm", seed=3)
    data = tiny_config(tmp_path / "runs", tiny_base, rewards=[{"name": "rm", "type": "hf", "path": str(rm_dir),
                                                                 "device": "cpu"}],
                       policies=[{"reward": "rm"}],
                       training=ppo_training(max_steps=2, lora={"r": 4, "alpha": 8,
                                                                "target_modules": ["q_proj", "v_proj"]}))
    before = checkpoint_fingerprint(tiny_base)
    info = train_all(parse_config(data, "lora.yaml"))["rm"]
    assert info.kind == "lora" and info.checkpoint is None and info.manifest["algorithm"] == "ppo"
    adapter = load_file(str(info.path / "adapter_model.safetensors"))
    assert adapter and all("lora_A" in k or "lora_B" in k for k in adapter)  # the adapter alone: no value head
    assert any(adapter[k].abs().max() > 0 for k in adapter if "lora_B" in k)
    # The reference is θ0 (the adapter off), not the policy: once the adapter moved, the rollout's KL is not zero.
    curve = info.manifest["training_curve"]
    assert abs(curve[0]["objective/kl"]) < 1e-4 < abs(curve[-1]["objective/kl"])
    assert checkpoint_fingerprint(tiny_base) == before == info.base_fingerprint


# -- every reward type through the rollout -----------------------------------------------------------------------

REWARD_SPECS = [
    {"name": "vader", "type": "vader"},
    {"name": "length", "type": "length"},
    {"name": "conciseness", "type": "conciseness"},
    {"name": "diversity", "type": "diversity"},
    {"name": "readability", "type": "readability"},
    {"name": "keywords", "type": "keywords", "keywords": ["food", "staff"], "mode": "count"},
    UP,
    {"name": "rm", "type": "hf", "device": "cpu"},  # path filled in below
    {"name": "rm_lower", "type": "hf", "device": "cpu", "higher_is_better": False},  # PPO is given −score
]


@pytest.mark.parametrize("spec", REWARD_SPECS, ids=[s["name"] for s in REWARD_SPECS])
def test_a_rollout_scores_every_reward_type_as_the_project_scores_the_decoded_responses(spec, tiny_base, tmp_path):
    if spec["type"] == "hf":
        spec = {**spec, "path": str(tiny_reward_model_dir(tmp_path / "rm", seed=1))}
    reward = next(iter(build_reward_table([spec]).values()))
    tokenizer = load_tokenizer(tiny_base)
    policy = load_causal_lm(tiny_base)
    prompts = ["The food was", "Our waiter", "We came back for the dessert and", "Staff"]
    ids = [policy_prompt_ids(tokenizer, p) for p in prompts]
    settings = PPOConfig(output_dir=str(tmp_path), use_cpu=True, response_length=10, local_rollout_forward_batch_size=3,
                         missing_eos_penalty=0.25)
    torch.manual_seed(0)
    rollout = collect(policy, lambda ids, mask, positions: torch.zeros(ids.shape), policy, prompts, ids, tokenizer,
                      reward, settings)
    # The responses as a reader of the token ids sees them: up to the first EOS, special tokens dropped.
    texts, ended = [], []
    for row in rollout.input_ids[:, rollout.prompt_width:].tolist():
        cut = row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
        ended.append(cut < len(row))
    assert rollout.responses == texts
    sign = 1.0 if reward.higher_is_better else -1.0
    expected = [sign * s - (0.0 if e else 0.25) for s, e in zip(reward.score(prompts, texts), ended)]
    torch.testing.assert_close(rollout.scores, torch.tensor(expected, dtype=torch.float32), rtol=1e-5, atol=1e-5)
    # The reference here is the policy itself: its log-probabilities from a full forward pass equal generation's.
    torch.testing.assert_close(rollout.ref_logprobs, rollout.logprobs, rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # a PPO training run
def test_adaptive_kl_coefficient_follows_its_rule_over_a_training_run(tiny_base, tmp_path):
    target, horizon = 0.5, 200.0
    training = ppo_training(max_steps=4, ppo={"num_ppo_epochs": 2, "kl_target": target, "kl_horizon": horizon})
    info = train_all(parse_config(tiny_config(tmp_path, tiny_base, training=training,
                                              prompts={"source": "demo", "n_train": 16, "n_eval": 4}),
                                  "adaptive.yaml"))["long"]
    curve = info.manifest["training_curve"]
    beta = 0.02
    for row in curve:
        assert row["objective/kl_coef"] == pytest.approx(beta, rel=1e-9)
        beta *= 1 + min(max(row["objective/kl"] / target - 1, -0.2), 0.2) * 8 / horizon
    assert info.manifest["training_details"]["kl_coef_final"] == pytest.approx(beta, rel=1e-9)
    assert curve[-1]["objective/kl_coef"] != 0.02


@pytest.mark.slow  # a PPO training run
def test_ppo_statistics_reach_report_to_integrations(tiny_base, tmp_path):
    pytest.importorskip("tensorboard")
    training = ppo_training(max_steps=2, trainer={"report_to": ["tensorboard"]})
    train_all(parse_config(tiny_config(tmp_path, tiny_base, training=training), "tb.yaml"))
    events = list((tmp_path / "t" / "logs").rglob("events.out.tfevents*"))
    written = b"".join(path.read_bytes() for path in events)
    for tag in (b"objective/kl_coef", b"objective/scores", b"policy/entropy_avg", b"policy/clipfrac_avg",
                b"loss/value_avg", b"val/explained_variance"):
        assert tag in written, tag


# -- bad settings: one line before any work ------------------------------------------------------------------------

@pytest.mark.parametrize("training, message", [
    ({"per_device_batch_size": 4, "gradient_accumulation_steps": 2, "ppo": {"num_mini_batches": 4}},
     r"ppo.num_mini_batches 4 does not split the rollout batch \(per_device_batch_size 4 × "
     r"gradient_accumulation_steps 2\) into minibatches of whole micro-batches"),
    ({"per_device_batch_size": 6, "ppo": {"num_mini_batches": 4}}, "use a divisor of gradient_accumulation_steps"),
    ({"per_device_batch_size": 4, "ppo": {"whiten_rewards": True}}, "whiten_rewards needs minibatches of at least 8"),
    ({"rl": {"top_p": 0.9}}, "rl.top_p is 0.9 but PPO samples from the full distribution"),
    ({"ppo": {"kl_target": 6.0}}, "ppo.kl_target and ppo.kl_horizon go together"),
    ({"ppo": {"kl_horizon": 10000}}, "ppo.kl_target and ppo.kl_horizon go together"),
    ({"ppo": {"kl_target": -1, "kl_horizon": 10}}, "kl_target"),
    ({"beta": 0, "ppo": {"kl_target": 6.0, "kl_horizon": 10000}}, "ppo.kl_target is set but beta is 0"),
])
def test_ppo_settings_that_would_fail_mid_run_are_config_errors(training, message, tmp_path):
    data = tiny_config(tmp_path, tmp_path, training={"algorithm": "ppo", **training})
    with pytest.raises(TrainingError, match=message):
        parse_config(data, "cfg.yaml")


def test_ppo_minibatches_that_trl_can_accumulate_are_accepted(tmp_path):
    for training in ({"per_device_batch_size": 8, "ppo": {"num_mini_batches": 4}},
                     {"per_device_batch_size": 3, "gradient_accumulation_steps": 4, "ppo": {"num_mini_batches": 2}}):
        parse_config(tiny_config(tmp_path, tmp_path, training={"algorithm": "ppo", **training}), "cfg.yaml")


def test_fewer_training_prompts_than_one_rollout_batch_is_refused(tmp_path):
    config = parse_config(tiny_config(tmp_path, tmp_path, training={"algorithm": "ppo", "per_device_batch_size": 16}),
                          "cfg.yaml")
    with pytest.raises(TrainingError, match=r"policy 'long': PPO draws rollout batches of .* = 16 prompts but there "
                                            r"are 8 training prompts"):
        check_environment(config)


@pytest.mark.slow  # two PPO training runs
def test_the_same_config_trains_the_same_ppo_policy_whatever_ran_before(tiny_base, tmp_path):
    """The stage seeds PPO, so the value head and the samples do not depend on what the process did earlier."""
    training = ppo_training(max_steps=2)
    first = train_all(parse_config(tiny_config(tmp_path / "a", tiny_base, training=training), "a.yaml"))["long"]
    torch.rand(1000), torch.nn.Linear(64, 64)  # the process's random state moves on
    second = train_all(parse_config(tiny_config(tmp_path / "b", tiny_base, training=training), "b.yaml"))["long"]
    a, b = state_dict_of(first.path), state_dict_of(second.path)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.manifest["training_curve"] == second.manifest["training_curve"]


def test_ppo_trainer_fields_pass_through_except_the_ones_the_stage_sets(tmp_path):
    def config(trainer):
        return tiny_config(tmp_path, tmp_path, training={"algorithm": "ppo", "trainer": trainer})

    parse_config(config({"local_rollout_forward_batch_size": 4, "ds3_gather_for_generation": False}), "cfg.yaml")
    with pytest.raises(TrainingError, match=r"field 'trainer.num_ppo_epochs': the stage sets num_ppo_epochs from the "
                                            r"setting `ppo.num_ppo_epochs`; set that instead"):
        parse_config(config({"num_ppo_epochs": 2}), "cfg.yaml")
    with pytest.raises(TrainingError, match=r"field 'trainer.kl_target': the stage sets kl_target from the setting "
                                            r"`ppo.kl_target`"):
        parse_config(config({"kl_target": 1.0}), "cfg.yaml")
    with pytest.raises(TrainingError, match=r"'trainer.num_ppo_epoch' is not a field of the project's PPOConfig "
                                            r"\(pipelines/training/ppo_config.py\); did you mean num_ppo_epochs"):
        parse_config(config({"num_ppo_epoch": 2}), "cfg.yaml")
