"""Online RL (trl's RLOO and GRPO) with a reward from reward_models as the signal, on a tiny local θ0."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safetensors.torch import load_file

from pipelines.config.load import parse_config
from pipelines.training import train_all
from lines.fingerprints import fingerprint as checkpoint_fingerprint
from pipelines.training.rewards import TrlRewardFunction, message_text
from reward_models import CharLength
from train_helpers import max_weight_change, one_torch_thread, tiny_base, tiny_config  # noqa: F401


def rl_training(algorithm: str, **extra) -> dict:
    return {"algorithm": algorithm, "learning_rate": 1e-2, "max_steps": 2, "per_device_batch_size": 4,
            "logging_steps": 1, "beta": 0.05, "max_length": 64, "rl": {"num_generations": 4, "max_new_tokens": 12},
            **extra}


class CompletionRecorder:
    """Every (prompt, completion) trl scored, with the reward computed here from the reward itself (not from what
    the trainer was given: a signal with the wrong sign must not hide in the record)."""

    def __init__(self, monkeypatch):
        import pipelines.training.online_rl as online_rl

        self.rows: list[tuple[str, str, float]] = []
        recorder = self

        class RecordingRewardFunction(TrlRewardFunction):
            def __call__(self, prompts, completions, **kwargs):
                texts = [message_text(p) for p in prompts], [message_text(c) for c in completions]
                recorder.rows += zip(*texts, self.reward.score(*texts).tolist())
                return super().__call__(prompts, completions, **kwargs)

        monkeypatch.setattr(online_rl, "TrlRewardFunction", RecordingRewardFunction)

    def advantage_weighted_change(self, policy, base: Path) -> float:
        """Σ_i A_i·(log π(y_i|x_i) − log π0(y_i|x_i)) over the completions trained on, A_i the reward minus the mean
        of its prompt's group (the baseline RLOO and GRPO use). Positive: the policy moved probability towards the
        completions that scored above their group, i.e. it followed the reward; negative: it followed −reward."""
        from lines.models import load_causal_lm, load_policy_model
        from pipelines.training.checkpoints import load_tokenizer
        from reward_models import token_logprobs

        tokenizer = load_tokenizer(base)
        groups: dict[str, list[float]] = {}
        for prompt, _, reward in self.rows:
            groups.setdefault(prompt, []).append(reward)
        advantages = np.array([r - np.mean(groups[p]) for p, _, r in self.rows])
        prompts = [tokenizer(p)["input_ids"] for p, _, _ in self.rows]
        sequences = [ids + tokenizer(c, add_special_tokens=False)["input_ids"] for ids, (_, c, _) in
                     zip(prompts, self.rows)]
        starts = [len(ids) for ids in prompts]

        def logprobs(model):
            return np.array([lp.sum() for lp in token_logprobs(model, sequences, starts, tokenizer.pad_token_id)])

        change = logprobs(load_policy_model(policy, base, "cpu", "float32")) - logprobs(load_causal_lm(base, "cpu"))
        assert np.abs(advantages).max() > 0, "every group tied: no signal to follow"
        return float(advantages @ change)


@pytest.mark.slow  # an RLOO training run
def test_rloo_full_fine_tuning_trains_on_the_reward(tiny_base, tmp_path, monkeypatch):
    recorder = CompletionRecorder(monkeypatch)
    config = parse_config(tiny_config(tmp_path, tiny_base, training=rl_training("rloo")), "rloo.yaml")
    info = train_all(config)["long"]
    assert len(recorder.rows) == 8  # 2 steps × 4 completions
    assert recorder.advantage_weighted_change(info.path, tiny_base) > 0
    assert info.kind == "full" and max_weight_change(info.path, tiny_base) > 1e-4
    manifest = json.loads((info.path / "manifest.json").read_text())
    assert manifest["algorithm"] == "rloo" and manifest["hyperparameters"]["beta"] == 0.05
    curve = manifest["training_curve"]
    assert [row["step"] for row in curve] == [1, 2]
    # trl logs the reward it optimised under the reward function's name: the signal reached the trainer.
    assert all(row["rewards/long/mean"] > 0 for row in curve) and all("kl" in row for row in curve)
    assert manifest["evaluation"]["policy"]["long"]["n"] == 8


def test_grpo_lora_trains_only_the_adapter(tiny_base, tmp_path, monkeypatch):
    recorder = CompletionRecorder(monkeypatch)
    # Eight steps: with two, the direction of the change followed the draw of the demo's prompts (−0.19 and −0.10 at
    # two and four steps on one draw, positive on another); eight follow the reward.
    config = parse_config(tiny_config(tmp_path, tiny_base, training=rl_training(
        "grpo", lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, max_steps=8)), "grpo.yaml")
    before = checkpoint_fingerprint(tiny_base)
    info = train_all(config)["long"]
    assert info.kind == "lora" and info.checkpoint is None
    adapter = load_file(str(info.path / "adapter_model.safetensors"))
    assert any(adapter[k].abs().max() > 0 for k in adapter if "lora_B" in k)
    assert info.manifest["algorithm"] == "grpo" and "rewards/long/mean" in info.manifest["training_curve"][0]
    assert checkpoint_fingerprint(tiny_base) == before == info.base_fingerprint  # θ0 untouched on disk
    assert recorder.advantage_weighted_change(info.path, tiny_base) > 0


def test_reward_function_adapter_reads_plain_and_conversational_inputs():
    fn = TrlRewardFunction(CharLength("long"))
    assert fn.__name__ == "long"
    assert fn(["p", "q"], [" two words", "x"]) == [9.0, 0.0]
    chat = fn([[{"role": "user", "content": "p"}]], [[{"role": "assistant", "content": "three small words"}]])
    assert chat == [17.0]
