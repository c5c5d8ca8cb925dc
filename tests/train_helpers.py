"""Tiny θ0 checkpoints and configs for the training-stage tests (everything local, seconds on CPU)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent

# Small enough that a trainer step takes milliseconds; two blocks so LiNeS has depth to scale.
TINY_LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=False)


def build_tiny_base(path: Path, seed: int = 0) -> Path:
    """A random tiny Llama with a BPE trained on the demo corpus, saved like θ0 (weights + tokenizer)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from pipelines.demo.data import demo_corpus
    from pipelines.training.tokenizer_train import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(demo_corpus(400, seed), vocab_size=400, model_max_length=128)
    config = AutoConfig.for_model("llama", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  **TINY_LLAMA)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("theta0") / "base")


def tiny_config(output_dir: Path, base: Path | None, run_name: str = "t", **sections) -> dict:
    """A training config for the tiny θ0: two rule rewards, demo prompts, a few steps, small evaluation."""
    config = {
        "run_name": run_name, "output_dir": str(output_dir), "seed": 0,
        "base": {"path": str(base)} if base is not None else None,
        "rewards": [{"name": "positive", "type": "vader"}, {"name": "long", "type": "length"}],
        "prompts": {"source": "demo", "n_train": 8, "n_eval": 4},
        "training": {"algorithm": "dpo", "learning_rate": 1e-2, "max_steps": 3, "per_device_batch_size": 4,
                     "logging_steps": 1, "max_length": 64,
                     "dpo": {"samples_per_prompt": 4, "max_new_tokens": 12},
                     "rl": {"num_generations": 4, "max_new_tokens": 12}},
        "policies": [{"reward": "long"}],
        "evaluation": {"samples_per_prompt": 2, "max_new_tokens": 12, "batch_size": 8},
    }
    for key, value in sections.items():
        config[key] = value
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def launch(args: list[str], timeout: int = 240, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command from the repository root with the test environment (offline, CPU)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def accelerate_bin() -> str:
    return str(Path(sys.executable).with_name("accelerate"))


def state_dict_of(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


def max_weight_change(policy: Path, base: Path) -> float:
    a, b = state_dict_of(policy), state_dict_of(base)
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and far more steadily on a busy machine (OpenMP threads of
    several processes spinning against each other slowed tiny steps by 4x); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
