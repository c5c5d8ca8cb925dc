"""`--check` on the shipped configs, offline and without weights: passes once their data files exist (prepared here
from a local copy of hh-rlhf), fails with one line on a broken copy, and prints a plan whose numbers follow from
stated formulas."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from dataset_fixtures import prepared_workdir
from pipelines import merge_policies
from pipelines.check.memory import model_shape, training_bytes

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "configs" / "real_llama3_8b.yaml"
NO_GPU = not torch.cuda.is_available()

# Meta-Llama-3-8B's config.json (the fields that shape it), and GPT-2 large's with a one-label head.
LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
             "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
             "tie_word_embeddings": False, "rms_norm_eps": 1e-05, "rope_theta": 500000.0}
GPT2_LARGE_RM = {"architectures": ["GPT2ForSequenceClassification"], "model_type": "gpt2", "n_embd": 1280,
                 "n_layer": 36, "n_head": 20, "n_positions": 1024, "vocab_size": 50257,
                 "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return prepared_workdir(tmp_path_factory.mktemp("work"), tmp_path_factory.mktemp("hh-rlhf"))


def check(*args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = merge_policies.main(["--check", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def never_run(monkeypatch):
    monkeypatch.setattr(merge_policies, "run", lambda *a, **k: pytest.fail("--check must not run the job"))


# ---------------------------------------------------------------- every shipped config passes
def test_the_real_config_passes_offline_once_its_data_exists(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    code, out, err = check("--config", "configs/real_llama3_8b.yaml")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == "config ok: configs/real_llama3_8b.yaml"
    assert "θ0: meta-llama/Meta-Llama-3-8B-Instruct (hub id, fetched at run time" in out
    assert "helpful: Ray2333/gpt2-large-helpful-reward_model (hub id, fetched at run time" in out
    assert "reads pair, prompt_template '\\n\\nHuman: {prompt} \\n\\nAssistant:'" in out
    assert "each point its exact soup adapter, rank 128 = Σ of the policies' ranks (vLLM max_lora_rank 128)" in out
    if NO_GPU:
        assert "not checked here (no CUDA device visible; check again on the GPU machine): " \
               "training.training.precision: bf16" in out
    assert not (workdir / "runs").exists()


def test_the_demo_config_passes_from_the_repository(monkeypatch):
    monkeypatch.chdir(REPO)
    code, out, err = check("--config", "configs/demo.yaml", "--set", "output_dir=/nonexistent/runs")
    assert code == 0 and out.strip().splitlines()[-1] == "config ok: configs/demo.yaml", err
    assert "θ0: built by the SFT stage from base.sft.init" in out
    code, out, err = check("--config", "configs/demo.yaml", "--set", "output_dir=/nonexistent/runs", "--seeds", "0,1,2")
    assert code == 0 and "replicated over seeds 0, 1, 2: every stage above runs 3 times" in out, err


def test_the_plan_counts_points_and_generations_of_the_real_config(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    code, out, _ = check("--config", "configs/real_llama3_8b.yaml", "--accelerate-config",
                         "configs/accelerate/deepspeed_zero2.yaml", "--gpus", "8")
    assert code == 0
    # Validation: 3 β candidates (LiNeS) + 3 λ candidates (uniform control) × 11 weights = 66 merges, all distinct.
    assert "validation: 66 points, 66 distinct merges × 200 prompts × 1 = 13,200 generations" in out
    # Evaluation: soup, LiNeS, uniform fronts (33) + θ0 + 2 policies + 2 × 5 γ × 2 forgetting variants (20) = 56
    # points; equal merges share a generation (the fronts' end points are the policies; γ = 1 is the policy; γ = 0
    # of both forgetting variants is θ0), and the MORL policy adds one.
    assert "evaluation: 56 points (+1 reference policy)" in out
    # Norm-matched controls: the LiNeS front's 11 points and the forgetting study's LiNeS edits with β = 1 − γ ≠ 0
    # (γ < 1: 4 per policy), one distinct merge each.
    assert "matched controls: 19 points, 19 distinct merges × 1,000 prompts × 1 = 19,000 generations" in out
    assert "400 steps × 2 per device × 8 accumulation × 8 processes = 51,200 pairs" in out
    assert "launch: configs/accelerate/deepspeed_zero2.yaml: 8 processes, DeepSpeed ZeRO-2; 8 GPUs (--gpus)" in out


# ---------------------------------------------------------------- memory from config.json, by stated formulas
@pytest.fixture(scope="module")
def local_models(workdir):
    for name, config in (("llama3-8b", LLAMA3_8B), ("gpt2-large-rm", GPT2_LARGE_RM)):
        (workdir / "models" / name).mkdir(parents=True, exist_ok=True)
        (workdir / "models" / name / "config.json").write_text(json.dumps(config))
    return workdir / "models"


def test_parameter_counts_from_config_json_alone():
    llama = model_shape(LLAMA3_8B)
    assert llama.parameters == 8_030_261_248  # Meta-Llama-3-8B's published parameter count
    # LoRA r on every linear layer but lm_head: r·(in + out) per projection, per layer (GQA: k, v are 4096 → 1024).
    per_layer = 2 * (4096 + 4096) + 2 * (4096 + 1024) + 2 * (4096 + 14336) + (14336 + 4096)
    assert llama.lora_parameters(64, "all-linear") == 64 * per_layer * 32 == 167_772_160
    assert llama.lora_parameters(8, ["q_proj", "v_proj"]) == 8 * ((4096 + 4096) + (4096 + 1024)) * 32
    # GPT-2 large: 774,030,080 parameters and a 1280 → 1 score head.
    assert model_shape(GPT2_LARGE_RM, "seq_cls").parameters == 774_030_080 + 1280


@pytest.mark.parametrize("stage, offload, expected", [
    (0, False, 16 * 100 + 7 * 2),                 # DDP: 16 bytes per trained parameter, the frozen base in bf16
    (1, False, 4 * 100 + 12 * 100 / 4 + 7 * 2),
    (2, False, 2 * 100 + 14 * 100 / 4 + 7 * 2),
    (3, False, 16 * 100 / 4 + 7 * 2 / 4),
    (3, True, 0.0),                               # optimizer and parameters on the CPU
])
def test_training_bytes_follow_zero_accounting(stage, offload, expected):
    assert training_bytes(trained=100, frozen=7, frozen_bytes=2, reference=0, reference_bytes=2, processes=4,
                          zero_stage=stage, offload_optimizer=offload, offload_params=offload) == pytest.approx(expected)


def test_memory_per_gpu_of_the_real_config(workdir, local_models, monkeypatch):
    monkeypatch.chdir(workdir)
    code, out, err = check("--config", "configs/real_llama3_8b.yaml", "--accelerate-config",
                           "configs/accelerate/deepspeed_zero2.yaml", "--gpus", "8", "--gpu-memory", "80",
                           "--set", "training.base.path=models/llama3-8b",
                           "--set", "rewards.0.path=models/gpt2-large-rm", "--set", "rewards.1.path=models/gpt2-large-rm")
    assert code == 0, err
    # LoRA DPO under ZeRO-2 on 8 GPUs: θ0 frozen in bf16 (2 bytes) + LoRA trained (2 + 14/8 bytes per parameter).
    training = 8_030_261_248 * 2 + 167_772_160 * (2 + 14 / 8)
    assert f"memory per process: {training / 1e9:.1f} GB (θ0 frozen in bf16 + 168 M LoRA parameters trained)" in out
    # The sweep outside vLLM: θ0 for the policy metrics and θ0 for KL in bf16, and two GPT-2-large RMs in bf16.
    outside = 2 * 8_030_261_248 * 2 + 2 * 774_031_360 * 2
    assert f"outside it {outside / 1e9:.1f} GB" in out
    assert f"a GPU of at least {outside / 0.5 / 1e9:.1f} GB" in out  # vLLM takes 50%: the rest must hold it
    assert "warning: sweep: outside vLLM the process holds about" not in out  # the shipped setting fits 80 GB


def test_a_setting_that_does_not_fit_the_gpu_is_a_warning(workdir, local_models, monkeypatch):
    monkeypatch.chdir(workdir)
    code, out, _ = check("--config", "configs/real_llama3_8b.yaml", "--gpus", "8", "--gpu-memory", "80",
                         "--set", "training.base.path=models/llama3-8b", "--set", "generation.vllm.gpu_memory_utilization=0.7")
    assert code == 0
    assert "warning: sweep: outside vLLM the process holds about 32.1 GB but 30% of a 80 GB GPU is 24.0 GB" in out


# ---------------------------------------------------------------- a broken copy fails with one line
def broken_copy(workdir: Path, old: str, new: str) -> str:
    text = REAL.read_text()
    assert old in text
    path = workdir / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    return "broken.yaml"


@pytest.mark.parametrize("old, new, message", [
    ("max_steps: 400", "max_stpes: 400",
     "error: broken.yaml: field 'training.training.max_stpes' is not a setting here; remove it or check its spelling"),
    ("meta-llama/Meta-Llama-3-8B-Instruct", "meta-llama/Meta Llama 3",
     "error: broken.yaml: training: base.path: 'meta-llama/Meta Llama 3' is neither a local path nor a hub id"),
    ("format: hh-rlhf, mode: single", "format: hh, mode: single",
     "error: broken.yaml: field 'rewards.0.format': unknown format 'hh'; use one of hh-rlhf, text-pair, chat"),
    ("max_lora_rank: 128", "max_lora_rank: 64",
     "error: broken.yaml: generation.vllm.max_lora_rank 64 is below the rank of the soup adapters, 128 = 64 "
     "(helpful) + 64 (harmless); set max_lora_rank to 128 or more"),
    ("path: data/hh_eval_prompts.jsonl", "path: data/hh_test_prompts.jsonl",
     "error: broken.yaml: prompts.path: 'data/hh_test_prompts.jsonl' does not exist"),
    ("n_validation: 200, n_eval: 1000", "n_validation: 200, n_eval: 100000",
     "error: broken.yaml: prompts: prompts: asked for 200 validation + 100000 evaluation prompts"),
])
def test_a_broken_copy_fails_with_one_line(workdir, monkeypatch, old, new, message):
    monkeypatch.chdir(workdir)
    code, out, err = check("--config", broken_copy(workdir, old, new))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), err
    assert "config ok" not in out


@pytest.mark.skipif(not NO_GPU, reason="the GPU count of this machine wins over --gpus")
@pytest.mark.parametrize("args, message", [
    (["--accelerate-config", "configs/accelerate/deepspeed_zero2.yaml", "--gpus", "4"],
     "error: configs/accelerate/deepspeed_zero2.yaml: num_processes is 8 but the machine has 4 GPUs (--gpus); set "
     "num_processes to 4"),
    (["--accelerate-config", "configs/accelerate/nope.yaml"],
     "error: accelerate config file 'configs/accelerate/nope.yaml' does not exist; give the path of a YAML file"),
])
def test_a_launch_that_does_not_fit_fails_with_one_line(workdir, monkeypatch, args, message):
    monkeypatch.chdir(workdir)
    code, _, err = check("--config", "configs/real_llama3_8b.yaml", *args)
    assert code == 2 and err.strip().splitlines() == [message]


def test_a_deepspeed_file_that_is_not_there_fails_with_one_line(workdir, monkeypatch, tmp_path):
    accelerate = tmp_path / "ds.yaml"
    accelerate.write_text("distributed_type: DEEPSPEED\nnum_processes: 1\n"
                          "deepspeed_config:\n  deepspeed_config_file: configs/deepspeed/zero9.json\n")
    monkeypatch.chdir(workdir)
    code, _, err = check("--config", "configs/real_llama3_8b.yaml", "--accelerate-config", str(accelerate))
    assert code == 2 and err.strip().splitlines() == [
        f"error: {accelerate}: deepspeed_config_file 'configs/deepspeed/zero9.json' does not exist; fix the path "
        "(read from the directory the job is started in)"]
