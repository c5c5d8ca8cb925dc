"""The SFT stage: θ0 built from nothing downloaded (local BPE + template corpus), saved with its tokenizer."""
from __future__ import annotations

import json

import pytest

from pipelines.config.load import parse_config
from pipelines.training import prepare_base
from pipelines.training.checkpoints import load_tokenizer
from lines.fingerprints import fingerprint as checkpoint_fingerprint
from train_helpers import TINY_LLAMA, one_torch_thread, tiny_config  # noqa: F401 (fixture)


def sft_config(tmp_path, **training):
    data = tiny_config(tmp_path, None)
    data["base"] = {"sft": {"init": {"model_type": "llama", **TINY_LLAMA}, "tokenizer": {"train": {"vocab_size": 320}},
                            "data": {"source": "demo", "n": 200}, "max_length": 64,
                            "training": {"learning_rate": 1e-2, "max_steps": 12, "per_device_batch_size": 8,
                                         "logging_steps": 3, **training}}}
    return parse_config(data, "sft.yaml")


@pytest.mark.slow  # an SFT run, then a rerun
def test_sft_builds_theta0_with_tokenizer_and_lower_loss_then_reuses_it(tmp_path):
    config = sft_config(tmp_path)
    base = prepare_base(config)
    assert base.path == config.run_dir / "base" and base.source == "sft" and not base.reused
    assert (base.path / "model.safetensors").is_file() and (base.path / "tokenizer.json").is_file()
    assert base.fingerprint == checkpoint_fingerprint(base.path)
    tokenizer = load_tokenizer(base.path)
    ids = tokenizer("Great food.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.decode(ids, skip_special_tokens=True) == "Great food."
    manifest = json.loads((config.run_dir / "base_manifest.json").read_text())
    losses = [row["loss"] for row in manifest["training_curve"]]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0]
    model_config = json.loads((base.path / "config.json").read_text())
    assert model_config["vocab_size"] == len(tokenizer) and model_config["num_hidden_layers"] == 2

    again = prepare_base(config)
    assert again.reused and again.fingerprint == base.fingerprint
    changed = prepare_base(sft_config(tmp_path, max_steps=6))
    assert not changed.reused and changed.fingerprint != base.fingerprint


def test_sft_from_a_text_file(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"body": f"The soup was great and the staff were kind {i}."}) + "\n"
                              for i in range(40)))
    config = sft_config(tmp_path, max_steps=3)
    config.base.sft.data = config.base.sft.data.model_copy(update={"source": "file", "path": str(corpus),
                                                                   "field": "body"})
    base = prepare_base(config)
    assert "soup" in load_tokenizer(base.path).get_vocab() or "Ġsoup" in load_tokenizer(base.path).get_vocab()
