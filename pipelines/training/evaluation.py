"""Sampling responses and scoring them: DPO's pairs and the manifests' before/after numbers share this.

Every sample is seeded by (seed, prompt id, sample index) through the generation stage's
`TransformersGenerator`, so θ0 and a policy answer each held-out prompt with the same random numbers
(a paired comparison) and the numbers do not depend on batch size or the number of processes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from reward_models import KLToBase, PolicyHandle, Reward

from ..config.generation import GenerationConfig
from ..config.training import EvaluationSpec
from ..distributed import device, run_sharded
from ..generation import TransformersGenerator
from ..prompts import Prompt
from ..summary import compare, summarize


def sample_rows(model, tokenizer, prompts: Sequence[Prompt] | Sequence[tuple[str, str]], generation: GenerationConfig,
                rewards: dict[str, Reward], base_model=None) -> list[dict]:
    """n samples per prompt with every reward's raw score (and KL to θ0 when `base_model` is given)."""
    pairs = [(p.prompt_id, p.prompt) if isinstance(p, Prompt) else (str(p[0]), str(p[1])) for p in prompts]
    if not pairs:
        return []
    generated = TransformersGenerator(model, tokenizer, generation).generate(pairs)
    texts = [row.prompt for row in generated]
    responses = [row.response for row in generated]
    handle = PolicyHandle(model, tokenizer)
    scores = {name: reward.score(texts, responses, policy=handle if reward.needs_policy else None)
              for name, reward in rewards.items()}
    if base_model is not None:
        scores["kl_to_base"] = KLToBase(base_model=base_model, batch_size=generation.batch_size).score(
            texts, responses, policy=handle)
    return [{"prompt_id": row.prompt_id, "prompt": row.prompt, "response": row.response,
             "sample_index": row.sample_index, "response_tokens": row.response_tokens,
             "scores": {name: float(values[i]) for name, values in scores.items()}}
            for i, row in enumerate(generated)]


def sharded_sample_rows(model, tokenizer, prompts: Sequence[Prompt], generation: GenerationConfig,
                        rewards: dict[str, Reward], workdir: Path, tag: str, base_model=None) -> list[dict]:
    """`sample_rows` with the prompts split across processes (each on its own device)."""
    items = [(p.prompt_id, p.prompt) for p in prompts]
    return run_sharded(items, lambda shard: sample_rows(model, tokenizer, shard, generation, rewards, base_model),
                       workdir, tag)


def summarize_rows(rows: list[dict], prompt_order: Sequence[str]) -> dict[str, dict]:
    """Every score column summarised by the project's convention (standard error over prompts)."""
    if not rows:
        return {}
    ids = [row["prompt_id"] for row in rows]
    return {name: summarize([row["scores"][name] for row in rows], ids, prompt_order) for name in rows[0]["scores"]}


def evaluation_generation(spec: EvaluationSpec) -> GenerationConfig:
    return GenerationConfig(backend="transformers", temperature=spec.temperature, top_p=spec.top_p,
                            max_new_tokens=spec.max_new_tokens, n=spec.samples_per_prompt, seed=spec.seed,
                            batch_size=spec.batch_size, device=str(device()))


def evaluate_model(model, tokenizer, prompts: Sequence[Prompt], spec: EvaluationSpec, rewards: dict[str, Reward],
                   workdir: Path, tag: str, base_model=None) -> dict:
    """{'summary': {reward: {mean, stderr, n}}, 'rows': every sample with its scores} on the held-out prompts."""
    rows = sharded_sample_rows(model, tokenizer, prompts, evaluation_generation(spec), rewards, workdir, tag,
                               base_model if spec.kl else None)
    return {"summary": summarize_rows(rows, [p.prompt_id for p in prompts]), "rows": rows, "n_prompts": len(prompts),
            "samples_per_prompt": spec.samples_per_prompt}


def compare_summaries(base: dict[str, dict], policy: dict[str, dict]) -> dict[str, dict]:
    """Policy minus θ0 for every score both have, by the project's significance rule (paired over prompts)."""
    return {name: compare(policy[name], base[name]) for name in policy if name in base}
