"""Models load in the precision the run asks for: what the trainer holds when training starts.

On this CPU machine bf16 training is refused, so the tests stand in for a bf16 GPU at the one place precision is
resolved (`environment.resolve_precision`) and stop the trainer when `train()` is called, after recording the dtypes
of the model it trains and of its reference.
"""
from __future__ import annotations

import json

import pytest
import torch

from pipelines.config.load import parse_config
from pipelines.config.training import Optimisation
from pipelines.training import environment, train_all
from train_helpers import one_torch_thread, tiny_base, tiny_config  # noqa: F401


class Started(Exception):
    """Raised instead of training: the trainer was built."""


def pretend_bf16_gpu(monkeypatch):
    monkeypatch.setattr(environment, "resolve_precision",
                        lambda precision, where: {"bf16": precision in ("bf16", "auto"), "fp16": precision == "fp16"})


def record_trainer_at_start(monkeypatch, trainer_cls) -> dict:
    seen = {}

    def train(self, *args, **kwargs):
        seen["trainable"] = {n: p.dtype for n, p in self.model.named_parameters() if p.requires_grad}
        seen["frozen"] = {n: p.dtype for n, p in self.model.named_parameters() if not p.requires_grad}
        ref = getattr(self, "ref_model", None)
        seen["reference"] = None if ref is None else {p.dtype for p in ref.parameters()}
        raise Started

    monkeypatch.setattr(trainer_cls, "train", train)
    return seen


@pytest.fixture
def prefs(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"We had dinner at Casa Rosa {i}.", "chosen": " Great food.",
                                        "rejected": " The bill was wrong."}) + "\n" for i in range(4)))
    return path


def dpo_config(tmp_path, base, prefs, **training):
    return parse_config(tiny_config(tmp_path, base, training={
        "algorithm": "dpo", "max_steps": 1, "per_device_batch_size": 2, "max_length": 64, "precision": "bf16",
        "dpo": {"pairs": "file", "dataset": str(prefs)}, **training}), "dtypes.yaml")


def test_a_lora_base_is_frozen_in_bf16_and_the_adapter_trains_in_fp32(tiny_base, tmp_path, prefs, monkeypatch):
    from trl import DPOTrainer

    pretend_bf16_gpu(monkeypatch)
    seen = record_trainer_at_start(monkeypatch, DPOTrainer)
    config = dpo_config(tmp_path, tiny_base, prefs, lora={"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]})
    with pytest.raises(Started):
        train_all(config)
    assert seen["trainable"] and all("lora_" in n for n in seen["trainable"])
    assert set(seen["trainable"].values()) == {torch.float32}
    assert seen["frozen"] and set(seen["frozen"].values()) == {torch.bfloat16}
    assert seen["reference"] is None  # the base with the adapter off is the reference


def test_full_fine_tuning_keeps_fp32_masters_and_a_bf16_reference(tiny_base, tmp_path, prefs, monkeypatch):
    from trl import DPOTrainer

    pretend_bf16_gpu(monkeypatch)
    seen = record_trainer_at_start(monkeypatch, DPOTrainer)
    with pytest.raises(Started):
        train_all(dpo_config(tmp_path, tiny_base, prefs))
    assert set(seen["trainable"].values()) == {torch.float32} and not seen["frozen"]
    assert seen["reference"] == {torch.bfloat16}


def test_on_cpu_everything_is_fp32(tiny_base, tmp_path, prefs, monkeypatch):
    from trl import DPOTrainer

    seen = record_trainer_at_start(monkeypatch, DPOTrainer)
    config = dpo_config(tmp_path, tiny_base, prefs, precision="auto",
                        lora={"r": 2, "alpha": 4, "target_modules": ["q_proj"]})
    with pytest.raises(Started):
        train_all(config)
    assert set(seen["trainable"].values()) | set(seen["frozen"].values()) == {torch.float32}


@pytest.mark.parametrize("precision, lora, load, reference", [
    ("bf16", True, torch.bfloat16, torch.bfloat16), ("bf16", False, torch.float32, torch.bfloat16),
    ("fp16", True, torch.float16, torch.float16), ("fp32", True, torch.float32, torch.float32),
])
def test_the_dtype_rule(precision, lora, load, reference, monkeypatch):
    pretend_bf16_gpu(monkeypatch)
    settings = Optimisation(precision=precision, lora={"r": 4} if lora else None)
    assert environment.model_dtypes(settings, "here") == environment.ModelDtypes(load, reference)
