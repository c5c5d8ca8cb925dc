"""DPO's preference pairs: reward-labelled samples (best vs worst of k) or rows of a local file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from lines.atomic import write_json
from reward_models import Reward
from reward_models.records import column, read_records

from ..config.generation import GenerationConfig
from ..config.training import DPOSpec
from ..distributed import device, is_main_process
from ..stage_times import timed
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


def samples_key(base: Path, prompts: Sequence[Prompt], generation: GenerationConfig) -> str:
    """What θ0's samples depend on: θ0's files (name, size, modification time), the prompts, the sampling settings
    and the seed (every sample is seeded by its own index, so equal keys mean equal samples)."""
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(base).iterdir() if p.is_file())
    identity = {"base": str(Path(base).resolve()), "files": files, "prompts": [(p.prompt_id, p.prompt) for p in prompts],
                "generation": generation.model_dump(mode="json", exclude={"device", "batch_size"})}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def theta0_samples(model, tokenizer, prompts: Sequence[Prompt], generation: GenerationConfig, workdir: Path,
                   tag: str, shared: tuple[Path, Path] | None) -> list[dict]:
    """The samples, unscored. With `shared` = (θ0's directory, a cache directory) they are read from the cache when
    an earlier policy of the run drew the same ones from θ0 (both policies rank one set of θ0's samples, each by
    its own reward), and written there otherwise."""
    if shared is None:
        with timed("sampling DPO pairs"):
            return sharded_sample_rows(model, tokenizer, prompts, generation, {}, workdir, tag)
    base, cache = shared
    path = cache / f"{samples_key(base, prompts, generation)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    with timed("sampling DPO pairs"):
        rows = sharded_sample_rows(model, tokenizer, prompts, generation, {}, workdir, tag)
    if is_main_process():
        write_json(path, rows, indent=None)
    return rows


def sampled_pairs(model, tokenizer, prompts: Sequence[Prompt], spec: DPOSpec, reward: Reward, seed: int,
                  workdir: Path, tag: str, shared: tuple[Path, Path] | None = None) -> tuple[list[dict], dict]:
    """k samples per prompt from `model`, ranked by `reward`; returns (pairs, statistics). `shared`: see
    `theta0_samples` (only for samples drawn from θ0)."""
    generation = GenerationConfig(backend="transformers", temperature=spec.temperature, top_p=spec.top_p,
                                  max_new_tokens=spec.max_new_tokens, n=spec.samples_per_prompt, seed=seed,
                                  batch_size=64, device=str(device()))
    rows = theta0_samples(model, tokenizer, prompts, generation, workdir, tag, shared)
    values = reward.score([row["prompt"] for row in rows], [row["response"] for row in rows])
    rows = [{**row, "scores": {reward.name: float(v)}} for row, v in zip(rows, values)]
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
