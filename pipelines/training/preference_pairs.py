"""DPO's preference pairs: reward-labelled samples (best vs worst of k) or rows of a local file."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from reward_models import Reward
from reward_models.records import column, read_records

from ..config.generation import GenerationConfig
from ..config.training import DPOSpec
from ..distributed import device
from ..prompts import Prompt
from .errors import TrainingError
from .evaluation import sharded_sample_rows


def best_worst_pairs(rows: list[dict], reward_name: str, min_margin: float, higher_is_better: bool = True
                     ) -> list[dict]:
    """Per prompt, the best and worst of its samples by the reward (the highest and lowest score, or the lowest and
    highest where lower is better), dropping ties (margin ≤ min_margin). Scores are kept in the reward's units.

    Identical texts never make a pair even when their scores differ by float noise.
    """
    by_prompt: dict[str, list[dict]] = {}
    for row in rows:
        by_prompt.setdefault(row["prompt_id"], []).append(row)
    pairs = []
    for samples in by_prompt.values():
        scores = np.array([s["scores"][reward_name] for s in samples])
        goodness = scores if higher_is_better else -scores
        best, worst = int(goodness.argmax()), int(goodness.argmin())
        margin = float(goodness[best] - goodness[worst])
        if margin <= min_margin or samples[best]["response"] == samples[worst]["response"]:
            continue
        pairs.append({"prompt": samples[best]["prompt"], "chosen": samples[best]["response"],
                      "rejected": samples[worst]["response"], "chosen_score": float(scores[best]),
                      "rejected_score": float(scores[worst]), "margin": margin})
    return pairs


def sampled_pairs(model, tokenizer, prompts: Sequence[Prompt], spec: DPOSpec, reward: Reward, seed: int,
                  workdir: Path, tag: str) -> tuple[list[dict], dict]:
    """k samples per prompt from `model`, ranked by `reward`; returns (pairs, statistics)."""
    generation = GenerationConfig(backend="transformers", temperature=spec.temperature, top_p=spec.top_p,
                                  max_new_tokens=spec.max_new_tokens, n=spec.samples_per_prompt, seed=seed,
                                  batch_size=64, device=str(device()))
    rows = sharded_sample_rows(model, tokenizer, prompts, generation, {reward.name: reward}, workdir, tag)
    pairs = best_worst_pairs(rows, reward.name, spec.min_margin, reward.higher_is_better)
    if not pairs:
        raise TrainingError(f"reward '{reward.name}': all {len(prompts)} prompts gave samples with equal rewards, so "
                            "no preference pair could be built; raise dpo.samples_per_prompt or dpo.temperature, or "
                            "lower dpo.min_margin")
    all_scores = [row["scores"][reward.name] for row in rows]
    stats = {"pairs": len(pairs), "prompts": len(prompts), "samples_per_prompt": spec.samples_per_prompt,
             "sample_reward_mean": float(np.mean(all_scores)),
             "chosen_reward_mean": float(np.mean([p["chosen_score"] for p in pairs])),
             "rejected_reward_mean": float(np.mean([p["rejected_score"] for p in pairs]))}
    return pairs, stats


def file_pairs(spec: DPOSpec) -> tuple[list[dict], dict]:
    """prompt/chosen/rejected rows of a local preference file (field names from the config)."""
    path = spec.dataset
    if not Path(path).is_file():
        raise TrainingError(f"dpo.dataset '{path}' does not exist; give a local .jsonl/.json/.csv/.parquet file with "
                            f"'{spec.prompt_field}', '{spec.chosen_field}' and '{spec.rejected_field}' fields")
    rows = read_records(path, error=TrainingError)
    if not rows:
        raise TrainingError(f"dpo.dataset '{path}' is empty; give at least one preference pair")
    prompts = column(rows, spec.prompt_field, path, error=TrainingError)
    chosen = column(rows, spec.chosen_field, path, error=TrainingError)
    rejected = column(rows, spec.rejected_field, path, error=TrainingError)
    pairs = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in zip(prompts, chosen, rejected)]
    return pairs, {"pairs": len(pairs), "source": str(path)}
