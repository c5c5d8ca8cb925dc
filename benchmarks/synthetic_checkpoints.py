"""Llama checkpoints of a given size built locally from a config, written tensor by tensor (flat memory).

θ0 is random (N(0, 0.02), norms near 1); each "policy" is θ0 plus a small seeded update, as fine-tuning gives.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lines.safetensors_writer import OutputTensor, StreamingSafetensorsWriter, parse_size  # noqa: E402,F401

SIZES = {
    # The "large" (~1.1 GB in bf16) and "medium" (~342 MB) checkpoints, and a small one for scaling.
    "large": dict(hidden_size=2048, intermediate_size=4096, num_hidden_layers=12, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=32000, shard="500MB"),
    "medium": dict(hidden_size=1024, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=32000, shard="200MB"),
    "small": dict(hidden_size=512, intermediate_size=1024, num_hidden_layers=12, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=32000, shard="100MB"),
}


def llama_layout(size: str) -> tuple[dict, list[tuple[str, tuple[int, ...]]]]:
    """config.json contents and (name, shape) of every tensor, from a model built on the meta device."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kwargs = {k: v for k, v in SIZES[size].items() if k != "shard"}
    config = LlamaConfig(**kwargs, tie_word_embeddings=False, dtype="bfloat16", architectures=["LlamaForCausalLM"])
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    return config.to_dict(), [(n, tuple(t.shape)) for n, t in model.state_dict().items()]


def write_checkpoint(path: Path, config: dict, layout, seed: int, base_seed: int = 0, delta: float = 0.0,
                     shard: str = "500MB") -> Path:
    """θ0 (delta == 0) or a policy θ0 + delta·N(0, 1), in bf16; θ0's values come from `base_seed` so every
    policy derived from the same base_seed shares it exactly."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    planned = [OutputTensor(n, torch.bfloat16, s) for n, s in layout]
    writer = StreamingSafetensorsWriter(path, planned, parse_size(shard))
    for index, (name, shape) in enumerate(layout):
        gen = torch.Generator().manual_seed(base_seed * 100_003 + index)
        base = torch.randn(shape, generator=gen) * 0.02
        if "norm" in name:
            base += 1.0
        if delta:
            gen = torch.Generator().manual_seed(seed * 100_003 + index + 7)
            base += torch.randn(shape, generator=gen) * delta
        writer.write(name, base.to(torch.bfloat16))
    writer.close()
    return path


def build(size: str, root: Path, policies: int = 2) -> tuple[Path, list[Path]]:
    """θ0 and `policies` policies of one size under root/size/ (reused if present)."""
    config, layout = llama_layout(size)
    shard = SIZES[size]["shard"]
    out = root / size
    base = out / "base"
    if not (base / "config.json").exists():
        write_checkpoint(base, config, layout, seed=0, shard=shard)
    paths = []
    for i in range(policies):
        p = out / f"policy_{i}"
        if not (p / "config.json").exists():
            write_checkpoint(p, config, layout, seed=i + 1, delta=0.002, shard=shard)
        paths.append(p)
    return base, paths
