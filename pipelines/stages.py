"""Glue between the main job's config and its stages: training θ0 and the policies, and the prompt sets."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from lines.atomic import write_jsonl

from .errors import PipelineError
from .prompts import Prompt, load_prompt_set
from .sweep.config import RunConfig
from .sweep.plan import EVALUATION, VALIDATION

log = logging.getLogger(__name__)
DEMO_HELD_OUT = "demo"  # `texts: demo` for the perplexity metric: held-out reviews generated from templates


def prompt_split(cfg: RunConfig) -> dict[str, list[Prompt]]:
    """Validation prompts (to choose β / λ) and evaluation prompts, disjoint and fixed by seed."""
    spec = dict(cfg.prompts)
    if spec.get("source") == "demo":
        from .demo_data import demo_prompts

        seed = spec.get("seed", 0)
        return {VALIDATION: demo_prompts("validation", spec.get("n_validation", 32), seed),
                EVALUATION: demo_prompts("test", spec.get("n_eval", 128), seed)}
    spec.pop("source", None)
    prompt_set = load_prompt_set(spec)
    return {EVALUATION: prompt_set.evaluation, VALIDATION: prompt_set.validation}


def resolve_metric_specs(cfg: RunConfig) -> RunConfig:
    """`texts: demo` → a held-out text file written under the run directory (reviews never used in training)."""
    metrics = []
    for spec in cfg.metrics:
        if spec.get("type") == "perplexity" and spec.get("texts") == DEMO_HELD_OUT:
            from .demo_data import demo_prompts, demo_reviews

            path = cfg.run_dir / "held_out_texts.jsonl"
            if not path.exists():
                prompts = demo_prompts("test", 64, seed=0)
                texts = [f"{p.prompt} {r}" for p, r in zip(prompts, demo_reviews([p.prompt for p in prompts], 777))]
                write_jsonl(path, [{"text": t} for t in texts])
            spec = {**spec, "texts": str(path)}
        metrics.append(spec)
    return cfg.model_copy(update={"metrics": metrics})


def train_stage(cfg: RunConfig, config_path: Path) -> tuple[str, list[str], dict[str, str]]:
    """Stage 1: θ0 and one policy per reward (trained, reused or loaded) under the same run directory.

    The `training` section is the training stage's config (see pipelines/train_policies.py) without
    run_name/output_dir/seed, which come from the main config; its `rewards` default to the main `rewards`.
    Returns (θ0, policies in reward order, extra reference policies such as the MORL baseline).
    """
    from .training import parse_config, train_all

    data = {"rewards": cfg.rewards, **cfg.training, "run_name": cfg.run_name, "output_dir": cfg.output_dir,
            "seed": cfg.seed}
    infos = train_all(parse_config(data, f"{config_path}: training"))
    missing = [name for name in cfg.reward_names if name not in infos]
    if missing:
        raise PipelineError(f"{config_path}: training.policies has no policy for reward {missing[0]!r}; add "
                            f"{{reward: {missing[0]}}}")
    policies = [str(infos[name].path) for name in cfg.reward_names]
    base = str(infos[cfg.reward_names[0]].base_path)
    extra = {name: str(info.path) for name, info in infos.items() if name not in cfg.reward_names}
    for name in cfg.reward_names:
        evaluation = infos[name].manifest.get("evaluation", {})
        log.info("policy %s: %s", name, json.dumps(evaluation.get("own_reward", evaluation))[:300])
    return base, policies, extra
