"""Glue between the main job's config and its stages: training θ0 and the policies, the held-out texts."""
from __future__ import annotations

import json
import logging

from lines.atomic import write_jsonl

from .config.run import DEMO_CONTROL, DEMO_HELD_OUT, RunConfig
from .sweep.runner import ReferencePolicy

log = logging.getLogger(__name__)


def resolve_metric_specs(cfg: RunConfig, write: bool) -> RunConfig:
    """`texts: demo` / `texts: demo-control` → held-out text files under the run directory (reviews, and texts of
    the control domains), written by the process that `write`s (the others read them after a barrier)."""
    from .demo_data import control_texts, heldout_reviews

    sources = {DEMO_HELD_OUT: ("held_out_reviews.jsonl", heldout_reviews),
               DEMO_CONTROL: ("held_out_control.jsonl", lambda: control_texts(pretraining=demo_pretraining(cfg)))}
    metrics = []
    for spec in cfg.metrics:
        placeholder = getattr(spec, "texts", None)
        if placeholder in sources:
            name, make = sources[placeholder]
            path = cfg.run_dir / name
            if write and not path.exists():
                write_jsonl(path, [{"text": t} for t in make()])
            spec = spec.model_copy(update={"texts": str(path)})
        metrics.append(spec)
    return cfg.model_copy(update={"metrics": metrics})


def demo_pretraining(cfg: RunConfig) -> set[str]:
    """The texts θ0 is pretrained on when this run trains it on the demo's corpus (else none are known)."""
    sft = cfg.train_config.base.sft if cfg.train_config is not None else None
    if sft is None or sft.data.source != "demo":
        return set()
    from .demo_data import demo_corpus

    return set(demo_corpus(sft.data.n, cfg.seed, sft.data.review_share))


def resolve_checkpoints(cfg: RunConfig) -> tuple[str, list[str], list[ReferencePolicy]]:
    """θ0, one policy per reward (in reward order), and reference policies (MORL): trained here or given."""
    if cfg.train_config is None:
        return cfg.base_model, [cfg.policies[name] for name in cfg.reward_names], []
    from .training import train_all

    infos = train_all(cfg.train_config)
    policies = [str(infos[name].path) for name in cfg.reward_names]
    base = str(infos[cfg.reward_names[0]].base_path)
    references = [ReferencePolicy(name, str(info.path), info.reward if isinstance(info.reward, dict) else None)
                  for name, info in infos.items() if name not in cfg.reward_names]
    for name in cfg.reward_names:
        evaluation = infos[name].manifest.get("evaluation", {})
        log.info("policy %s: %s", name, json.dumps(evaluation.get("difference", evaluation))[:300])
    return base, policies, references
