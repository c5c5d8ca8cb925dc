"""A tiny sweep set-up built locally: θ0 with a tokenizer, two perturbed policies, prompts, held-out texts."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

import tiny

PROMPTS = ["the food was", "our waiter", "the soup", "a table for two", "the view", "dessert was",
           "the staff", "we waited", "the wine", "lunch here", "the menu", "my friend said"]


def build_sweep_inputs(root: Path) -> dict:
    """Checkpoints, prompt file and held-out text file; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, root / "base")
    tiny.tiny_tokenizer(root / "base")
    for i, name in enumerate(["positive", "long"]):
        tiny.save(tiny.perturbed_copy(base, seed=i + 1, scale=0.3), root / name)
        tiny.tiny_tokenizer(root / name)
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    held_out = root / "held_out.jsonl"
    held_out.write_text("".join(json.dumps({"text": t}) + "\n" for t in
                                ["the food was great and the staff were friendly", "we waited an hour"]))
    return {"base": root / "base", "policies": [root / "positive", root / "long"], "prompts": prompts,
            "held_out": held_out}


def sweep_config(root: Path, paths: dict, **overrides) -> Path:
    config = {
        "run_name": "tiny", "output_dir": str(root / "runs"),
        "base_model": str(paths["base"]),
        "policies": {"positive": str(paths["policies"][0]), "long": str(paths["policies"][1])},
        "rewards": [{"name": "positive", "type": "vader"}, {"name": "long", "type": "length"}],
        "metrics": [{"name": "kl", "type": "kl"},
                    {"name": "perplexity", "type": "perplexity", "texts": str(paths["held_out"])}],
        "prompts": {"path": str(paths["prompts"]), "id_field": "id", "n_validation": 4, "n_eval": 8},
        "generation": {"backend": "transformers", "temperature": 1.0, "max_new_tokens": 8, "n": 1, "seed": 0,
                       "batch_size": 8},
        "sweep": {"points": 3, "variants": [
            {"name": "soup", "method": "linear"},
            {"name": "lines", "method": "linear", "lines": {"alpha": "auto", "beta_grid": [0.5, 1.0]}}]},
        "forgetting": {"gamma_grid": [0.0, 1.0]},
        "bootstrap": {"samples": 50},
    }
    for key, value in overrides.items():
        config[key] = value
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
