"""The real route, reduced, as CI runs it: SmolLM2-135M-Instruct (prepared by `prepare smollm2`) as θ0, chitchat
openers prepared by `prepare chitchat`, two LoRA DPO policies of two steps each, LoRA soups at two weights through
the sweep, and the report — configs/demo_real.yaml with fewer prompts, steps and tokens. Also: the chat template is
applied the same way where the policy is trained (trl's tokenisation of the pipeline's DPO rows), where it generates
and where KL scores it (the token ids, shown)."""
import copy
import csv
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_real.yaml"


@pytest.fixture(scope="module")
def chitchat_dir(tmp_path_factory):
    from pipelines.data.__main__ import main

    out = tmp_path_factory.mktemp("chitchat")
    assert main(["prepare", "chitchat", "--out", str(out), "--held-out", "4"]) == 0
    return out


def test_chat_template_same_ids_in_training_generation_and_scoring(smollm2_checkpoint):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    from trl import DPOConfig, DPOTrainer

    from pipelines.training.dpo import dpo_dataset
    from reward_models.text_format import policy_prompt_ids, response_ids

    tokenizer = AutoTokenizer.from_pretrained(smollm2_checkpoint)
    prompt, response = "Do you like dogs? 🐶", "Yes, I love dogs!"
    # Generation and the KL metric both start from policy_prompt_ids: the template's user turn + generation prompt.
    generation_ids = policy_prompt_ids(tokenizer, prompt)
    rendered = tokenizer.decode(generation_ids)
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith(
        "<|im_start|>user\nDo you like dogs? 🐶<|im_end|>\n<|im_start|>assistant\n"), rendered
    # Training: trl tokenises the pipeline's DPO rows itself (a tiny model: only its tokenisation is looked at).
    tiny = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    trainer = DPOTrainer(model=tiny, ref_model=copy.deepcopy(tiny), processing_class=tokenizer,
                         args=DPOConfig(output_dir="/tmp/unused-dpo", report_to=[], max_steps=1, use_cpu=True),
                         train_dataset=dpo_dataset(tokenizer, [{"prompt": prompt, "chosen": response,
                                                                "rejected": "No."}]))
    row = trainer.train_dataset[0]
    print("generation / KL prompt ids:", generation_ids)
    print("training prompt ids:      ", row["prompt_ids"])
    print("training chosen ids:      ", row["chosen_ids"], repr(tokenizer.decode(row["chosen_ids"])))
    assert row["prompt_ids"] == generation_ids
    # The chosen response is trained as the tokens the policy would generate, then the end of its turn.
    assert row["chosen_ids"][:len(response_ids(tokenizer, response))] == response_ids(tokenizer, response)
    assert tokenizer.decode(row["chosen_ids"][len(response_ids(tokenizer, response)):]).startswith("<|im_end|>")
    assert torch.is_tensor(tiny.lm_head.weight)


def test_reduced_real_run(smollm2_checkpoint, chitchat_dir, tmp_path):
    from pipelines.merge_policies import main

    reduced = [
        f"output_dir={tmp_path}", f"training.base.path={smollm2_checkpoint}",
        f"training.prompts.path={chitchat_dir / 'chitchat_train_prompts.jsonl'}",
        "training.prompts.n_train=4", "training.prompts.n_eval=4",
        "training.training.max_steps=2", "training.training.global_batch_size=2",
        "training.training.per_device_batch_size=2", "training.training.max_length=64",
        "training.training.dpo.samples_per_prompt=2", "training.training.dpo.max_new_tokens=8",
        "training.evaluation.max_new_tokens=8",
        f"prompts.path={chitchat_dir / 'chitchat_eval_prompts.jsonl'}", "prompts.n_validation=2", "prompts.n_eval=4",
        "generation.max_new_tokens=8", "sweep.points=2", "sweep.validation_points=null",
        "sweep.variants=[{name: soup, method: linear}, {name: lines, method: linear, lines: {alpha: auto, "
        "beta_grid: [1.0]}}]", "sweep.uniform_control.matched=false", "forgetting=null", "bootstrap.samples=20",
        f"metrics=[{{name: kl, type: kl}}, {{name: profanity, type: profanity}}, {{name: ppl_chitchat, "
        f"type: perplexity, texts: {chitchat_dir / 'chitchat_held_out.jsonl'}, max_length: 32}}]",
    ]
    assert main(["--config", str(CONFIG), "--quiet", *sum((["--set", s] for s in reduced), [])]) == 0
    run = tmp_path / "demo_real"
    for policy in ("concise", "lexicon"):
        manifest = json.loads((run / "policies" / policy / "manifest.json").read_text())
        assert manifest["kind"] == "lora" and manifest["reward"] == policy
        assert (run / "policies" / policy / "adapter_config.json").is_file()
    # Both policies ranked one shared set of θ0's samples: drawn once; the training stage's scratch (that cache
    # included) is gone once the policies are finished.
    assert json.loads((run / "timings.json").read_text())["stages"]["sampling DPO pairs"]["calls"] == 1
    assert not (run / "work").exists()
    with open(run / "report" / "points.csv") as handle:
        rows = list(csv.DictReader(handle))
    lines_rows = [r for r in rows if r["front"].startswith("lines")]
    assert lines_rows, {r["front"] for r in rows}
    blocks = lines_rows[0]["lambda_blocks"].split("/")
    assert len(blocks) == 30, blocks                  # λ(ℓ) of every one of SmolLM2's decoder blocks
    assert [float(b) for b in blocks] == sorted(float(b) for b in blocks)  # the increasing profile
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in (run / "report" / "report.md").read_text()
