"""DPO policies on a tiny local θ0: full and LoRA, manifests, resume, and merging trained policies."""
from __future__ import annotations

import json
import shutil
import statistics

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.config.load import parse_config
from pipelines.training import load_policy_infos, train_all
from pipelines.training.preference_pairs import best_worst_pairs
from train_helpers import max_weight_change, one_torch_thread, state_dict_of, tiny_base, tiny_config  # noqa: F401


@pytest.fixture(scope="module")
def full_run(tiny_base, tmp_path_factory):
    """Two fully fine-tuned DPO policies (one per reward) from the same θ0."""
    out = tmp_path_factory.mktemp("dpo_full")
    config = parse_config(tiny_config(out, tiny_base, policies=[{"reward": "positive"}, {"reward": "long"}]),
                          "dpo.yaml")
    return config, train_all(config)


@pytest.mark.slow  # DPO trains two policies (module fixture)
def test_full_policies_change_weights_and_record_complete_manifests(full_run, tiny_base):
    config, infos = full_run
    assert set(infos) == {"positive", "long"}
    for name, info in infos.items():
        assert info.kind == "full" and info.source == "trained" and info.checkpoint == info.path
        assert info.path == config.run_dir / "policies" / name
        assert max_weight_change(info.path, tiny_base) > 1e-4
        manifest = json.loads((info.path / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["reward"] == name and manifest["algorithm"] == "dpo"
        assert manifest["base"]["fingerprint"].startswith("sha256:")
        assert manifest["hyperparameters"]["dpo"]["loss_type"] == ["sigmoid", "sft"]
        assert [row["step"] for row in manifest["training_curve"]] == [1, 2, 3]
        assert all("loss" in row and "rewards/margins" in row for row in manifest["training_curve"])
        pairs = manifest["training_details"]["rounds"][0]
        assert pairs["chosen_reward_mean"] > pairs["rejected_reward_mean"]  # best-vs-worst labelling
        evaluation = manifest["evaluation"]
        for side in ("base", "policy"):
            stats = evaluation[side][name]
            assert stats["n"] == 8 and stats["n_prompts"] == 4  # 4 held-out prompts × 2 samples
            # The prompt is the unit: the standard error is over the 4 per-prompt means, each of 2 samples.
            assert stats["mean"] == pytest.approx(statistics.fmean(stats["per_prompt"]), abs=1e-12)
            assert stats["stderr"] == pytest.approx(statistics.stdev(stats["per_prompt"]) / 2, abs=1e-12)
        paired = [p - b for p, b in zip(evaluation["policy"][name]["per_prompt"],
                                        evaluation["base"][name]["per_prompt"])]
        assert evaluation["difference"][name]["stderr"] == pytest.approx(statistics.stdev(paired) / 2, abs=1e-12)
        assert evaluation["policy"]["kl_to_base"]["n"] == 8
        assert evaluation["difference"][name]["difference"] == pytest.approx(
            evaluation["policy"][name]["mean"] - evaluation["base"][name]["mean"])
    # Both policies are measured against the same θ0 numbers.
    assert infos["positive"].evaluation["base"] == {k: v for k, v in infos["long"].evaluation["base"].items()
                                                    if k in infos["positive"].evaluation["base"]}
    assert not (config.run_dir / "work").exists() or not any((config.run_dir / "work").iterdir())


@pytest.mark.slow  # shares the DPO training fixture, trains again
def test_rerun_reuses_finished_policies_and_retrains_changed_ones(full_run):
    config, infos = full_run
    stamp = (infos["long"].path / "model.safetensors").stat().st_mtime_ns
    again = train_all(config)
    assert all(info.reused for info in again.values())
    assert (again["long"].path / "model.safetensors").stat().st_mtime_ns == stamp
    assert set(load_policy_infos(config.run_dir)) == {"positive", "long"}

    changed = config.model_copy(deep=True)
    changed.policies = changed.policies[1:]
    changed.policies[0].training = {"max_steps": 2}
    retrained = train_all(changed)["long"]
    assert not retrained.reused and len(retrained.manifest["training_curve"]) == 2


@pytest.mark.slow  # shares the DPO training fixture
def test_trained_policies_merge_with_lines(full_run, tiny_base, tmp_path):
    from lines import merge, parse_recipe

    _, infos = full_run
    recipe = parse_recipe({"base_model": str(tiny_base), "method": "linear",
                           "models": [{"model": str(infos["positive"].checkpoint), "weight": 0.5},
                                      {"model": str(infos["long"].checkpoint), "weight": 0.5}]})
    out = merge(recipe, tmp_path / "soup")
    soup, base = state_dict_of(out), state_dict_of(tiny_base)
    a, b = state_dict_of(infos["positive"].path), state_dict_of(infos["long"].path)
    for name in base:
        expected = base[name] + 0.5 * (a[name] - base[name]) + 0.5 * (b[name] - base[name])
        torch.testing.assert_close(soup[name], expected, rtol=0, atol=1e-6)


def test_lora_policy_saves_an_adapter_and_its_exact_merged_checkpoint(tiny_base, tmp_path):
    config = parse_config(tiny_config(tmp_path, tiny_base, training={
        "algorithm": "dpo", "learning_rate": 1e-2, "max_steps": 3, "per_device_batch_size": 4, "logging_steps": 1,
        "max_length": 64, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"], "save_merged": True},
        "dpo": {"samples_per_prompt": 4, "max_new_tokens": 12}}), "lora.yaml")
    info = train_all(config)["long"]
    assert info.kind == "lora" and (info.path / "adapter_config.json").is_file()
    assert info.checkpoint == info.path / "merged"
    adapter = load_file(str(info.path / "adapter_model.safetensors"))
    lora_b = [k for k in adapter if "lora_B" in k]
    assert lora_b and all(adapter[k].abs().max() > 0 for k in lora_b)  # B starts at zero: it was trained
    base, merged = state_dict_of(tiny_base), state_dict_of(info.checkpoint)
    key = "model.layers.1.self_attn.q_proj.weight"
    a = adapter["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"]
    b = adapter["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"]
    torch.testing.assert_close(merged[key], base[key] + (8 / 4) * b @ a, rtol=0, atol=1e-6)
    untouched = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(merged[untouched], base[untouched])


def test_dpo_on_a_fixed_preference_file_lowers_the_loss(tiny_base, tmp_path):
    pairs = tmp_path / "prefs.jsonl"
    rows = [{"prompt": f"We had dinner at Casa Rosa with friends {i}.", "chosen": " Great food. Lovely staff.",
             "rejected": " The bill was wrong and the whole experience left us angry."} for i in range(8)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = parse_config(tiny_config(tmp_path, tiny_base, training={
        "algorithm": "dpo", "learning_rate": 5e-3, "max_steps": 12, "per_device_batch_size": 8, "logging_steps": 1,
        "max_length": 64, "dpo": {"pairs": "file", "dataset": str(pairs), "loss_type": ["sigmoid"]}}), "file.yaml")
    info = train_all(config)["long"]
    curve = info.manifest["training_curve"]
    assert curve[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy = reference at the start
    assert curve[-1]["loss"] < 0.5 and curve[-1]["rewards/margins"] > 0.5
    # Measured directly, outside trl: the policy prefers the file's chosen response more than θ0 does.
    assert preference_margin(info.path, rows[0]) > preference_margin(tiny_base, rows[0]) + 0.5


def preference_margin(model_dir, row) -> float:
    """log p(chosen | prompt) − log p(rejected | prompt) under the model at `model_dir`."""
    from lines.models import load_causal_lm
    from pipelines.training.checkpoints import load_tokenizer
    from reward_models import token_logprobs

    model, tokenizer = load_causal_lm(model_dir), load_tokenizer(model_dir)
    prompt = tokenizer(row["prompt"])["input_ids"]
    sequences = [prompt + tokenizer(row[k], add_special_tokens=False)["input_ids"] for k in ("chosen", "rejected")]
    chosen, rejected = token_logprobs(model, sequences, [len(prompt)] * 2, tokenizer.pad_token_id)
    return float(chosen.sum() - rejected.sum())


def test_best_worst_pairs_skip_ties_and_identical_texts():
    rows = [{"prompt_id": "a", "prompt": "p", "response": r, "scores": {"x": s}}
            for r, s in [("one", 1.0), ("two", 3.0), ("three", 2.0)]]
    rows += [{"prompt_id": "b", "prompt": "q", "response": "same", "scores": {"x": s}} for s in (1.0, 1.0)]
    rows += [{"prompt_id": "c", "prompt": "r", "response": r, "scores": {"x": s}} for r, s in [("u", 1.0), ("v", 1.1)]]
    pairs = best_worst_pairs(rows, "x", min_margin=0.5)
    assert pairs == [{"prompt": "p", "chosen": "two", "rejected": "one", "chosen_score": 3.0, "rejected_score": 1.0,
                      "margin": 2.0}]


class RoundRecorder:
    """What each round of iterated DPO used, recorded outside trl: the sampler's weights, a copy of the previous
    round's saved policy (the round deletes it once the next one is trained), and the reference log-probabilities
    trl precomputed for every pair (with the token ids they were computed on)."""

    def __init__(self, monkeypatch, scratch):
        import trl

        import pipelines.training.dpo as dpo_module

        self.samplers, self.previous, self.datasets, self.scratch = [], [], [], scratch
        original_pairs, recorder = dpo_module.sampled_pairs, self

        def recording_pairs(sampler, tokenizer, prompts, spec, reward, seed, round_dir, tag, shared=None):
            round_index = int(round_dir.name.removeprefix("round"))
            recorder.samplers.append({k: v.detach().clone() for k, v in sampler.state_dict().items()})
            if round_index > 0:
                copy = scratch / f"policy{round_index - 1}"
                shutil.copytree(round_dir.parent / f"round{round_index - 1}" / "policy", copy)
                recorder.previous.append(copy)
            return original_pairs(sampler, tokenizer, prompts, spec, reward, seed, round_dir, tag, shared)

        class RecordingDPOTrainer(trl.DPOTrainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                columns = ["prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps"]
                recorder.datasets.append(self.train_dataset.select_columns(
                    [c for c in columns if c in self.train_dataset.column_names]).to_list())

        monkeypatch.setattr(dpo_module, "sampled_pairs", recording_pairs)
        monkeypatch.setattr(trl, "DPOTrainer", RecordingDPOTrainer)


def sequence_logprobs(model, rows, pad_id, max_length: int) -> np.ndarray:
    """log π(y | x) of every recorded pair's chosen and rejected response, computed here (fp64 sums), over the
    tokens trl trains on: the first max_length tokens of prompt + response (trl's `keep_start` truncation)."""
    from reward_models import token_logprobs

    sequences = [(r["prompt_ids"] + r[k])[:max_length] for r in rows for k in ("chosen_ids", "rejected_ids")]
    starts = [len(r["prompt_ids"]) for r in rows for _ in range(2)]
    return np.array([lp.sum() for lp in token_logprobs(model, sequences, starts, pad_id)])


LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


@pytest.mark.slow
@pytest.mark.parametrize("lora,precompute", [(None, True), (LORA, True), (LORA, False)],
                         ids=["full", "lora", "lora-live-reference"])
def test_iterated_dpo_samples_from_and_is_anchored_to_the_previous_round(tiny_base, tmp_path, monkeypatch, lora,
                                                                          precompute):
    from lines.models import load_causal_lm, load_policy_model
    from pipelines.training.checkpoints import load_tokenizer

    recorder = RoundRecorder(monkeypatch, tmp_path / "recorded")
    training = {"algorithm": "dpo", "learning_rate": 1e-2, "max_steps": 2, "per_device_batch_size": 4,
                "logging_steps": 1, "max_length": 64,
                "dpo": {"samples_per_prompt": 4, "max_new_tokens": 12, "rounds": 2},
                # With precomputed reference log-probs (computed before each round), they are measurable here.
                "trainer": {"precompute_ref_log_probs": precompute}}
    if lora is not None:
        training["lora"] = lora
    config = parse_config(tiny_config(tmp_path, tiny_base, training=training), "rounds.yaml")
    info = train_all(config)["long"]
    manifest = info.manifest
    assert [(row["round"], row["step"]) for row in manifest["training_curve"]] == [(0, 1), (0, 2), (1, 3), (1, 4)]
    assert [r["round"] for r in manifest["training_details"]["rounds"]] == [0, 1]
    assert len(recorder.samplers) == len(recorder.datasets) == 2 and len(recorder.previous) == 1

    theta0 = load_causal_lm(tiny_base, "cpu", "float32")
    previous = load_policy_model(recorder.previous[0], tiny_base, "cpu", "float32")
    # Round 1 samples from θ0, round 2 from round 1's policy (a new seed alone would also change the samples).
    for sampled, expected in zip(recorder.samplers, (theta0, previous)):
        assert sampled.keys() == expected.state_dict().keys()
        for name, value in expected.state_dict().items():
            torch.testing.assert_close(sampled[name], value, rtol=0, atol=1e-6)

    if lora is not None:  # the saved policy is one adapter, not also the trainer's frozen copy of the previous one
        assert [p.name for p in info.path.iterdir() if p.is_dir()] == []
    if not precompute:
        # Reference computed live at every step: at the first step of round 2 the policy still equals round 1's
        # policy, so its implicit DPO rewards β·(log π − log π_ref) are 0 exactly if (and only if) that is the anchor.
        first_of_round2 = manifest["training_curve"][2]
        assert first_of_round2["rewards/chosen"] == first_of_round2["rewards/rejected"] == 0.0
        assert manifest["training_curve"][3]["rewards/chosen"] != 0.0  # and they move once it trains
        return
    # The reference of each round, measured outside trl: θ0 in round 1, round 1's policy in round 2 — not θ0.
    pad_id = load_tokenizer(tiny_base).pad_token_id
    for rows, reference in zip(recorder.datasets, (theta0, previous)):
        used = np.array([r[k] for r in rows for k in ("ref_chosen_logps", "ref_rejected_logps")])
        expected = sequence_logprobs(reference, rows, pad_id, training["max_length"])
        np.testing.assert_allclose(used, expected, rtol=0, atol=1e-4)
    second = recorder.datasets[1]
    used = np.array([r[k] for r in second for k in ("ref_chosen_logps", "ref_rejected_logps")])
    # The rounds' anchors differ.
    assert np.abs(used - sequence_logprobs(theta0, second, pad_id, training["max_length"])).max() > 1e-2


def test_a_lora_round_without_a_frozen_previous_adapter_is_refused(tiny_base, tmp_path):
    """Where PEFT cannot keep trl's frozen copy of the adapter, trl would anchor round 2 to θ0: refused in one line."""
    from types import SimpleNamespace

    from pipelines.training.dpo import _check_lora_reference
    from pipelines.training.errors import TrainingError

    model = SimpleNamespace(peft_config={"default": object()})
    trainer = SimpleNamespace(model=model, accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    job = SimpleNamespace(where="cfg.yaml: policies[0]", settings=SimpleNamespace(lora=object()))
    with pytest.raises(TrainingError, match=r"^cfg.yaml: policies\[0\]: dpo.rounds > 1 with LoRA .* upgrade peft"):
        _check_lora_reference(trainer, job, tmp_path / "round0" / "policy")
    _check_lora_reference(trainer, job, None)  # round 1: the base with the adapter off is θ0, as it should be
    model.peft_config["ref"] = object()
    _check_lora_reference(trainer, job, tmp_path / "round0" / "policy")


@pytest.mark.slow  # a DPO training run
def test_morl_baseline_trains_on_the_z_scored_weighted_sum(tiny_base, tmp_path):
    config = parse_config(tiny_config(tmp_path, tiny_base, policies=[{"reward": "long"}],
                                      morl={"name": "morl", "weights": {"positive": 0.5, "long": 0.5}}), "morl.yaml")
    infos = train_all(config)
    assert set(infos) == {"long", "morl"}
    morl = infos["morl"].manifest
    assert morl["reward"] == {"positive": 0.5, "long": 0.5}
    statistics = morl["training_signal"]["morl"]["statistics"]
    assert statistics["long"]["method"] == "zscore" and statistics["long"]["std"] > 0
    evaluation = morl["evaluation"]
    # θ0's samples define the z-scores, so θ0's mean of the objective is 0 by construction.
    assert abs(evaluation["base"]["morl"]["mean"]) < 1e-9 and evaluation["policy"]["morl"]["n"] == 8
    assert max_weight_change(infos["morl"].path, tiny_base) > 1e-4


@pytest.mark.slow  # shares the DPO training fixture
def test_loaded_policies_are_validated_and_recorded_without_copying(full_run, tiny_base, tmp_path):
    _, trained = full_run
    adapter_run = parse_config(tiny_config(tmp_path / "a", tiny_base, training={
        "algorithm": "dpo", "learning_rate": 1e-2, "max_steps": 1, "per_device_batch_size": 4, "max_length": 64,
        "lora": {"r": 2, "alpha": 4, "target_modules": ["q_proj"]}, "dpo": {"samples_per_prompt": 4,
                                                                            "max_new_tokens": 8}}), "a.yaml")
    adapter = train_all(adapter_run)["long"].path
    config = parse_config(tiny_config(tmp_path / "b", tiny_base, policies=[
        {"reward": "positive", "path": str(trained["positive"].path)}, {"reward": "long", "path": str(adapter)}]),
        "loaded.yaml")
    infos = train_all(config)
    assert infos["positive"].source == "loaded" and infos["positive"].path == trained["positive"].path
    assert infos["positive"].checkpoint == trained["positive"].path and infos["long"].kind == "lora"
    recorded = config.run_dir / "policies" / "positive"
    assert sorted(p.name for p in recorded.iterdir()) == ["manifest.json"]  # a record, not a copy
    # Same θ0, same held-out prompts and seeds: the loaded policy scores exactly as when it was trained.
    assert infos["positive"].evaluation["policy"]["positive"] == trained["positive"].evaluation["policy"]["positive"]
    assert set(load_policy_infos(config.run_dir)) == {"positive", "long"}
