"""Run the sweep: validation phase (select β / λ), evaluation phase, gathered on rank 0."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

from lines import MergeInputs
from reward_models import build_reward, fit_normalizers

from ..generation.backend_choice import make_generator
from ..generation.config import parse_generation_config
from ..prompts import Prompt
from lines.atomic import write_jsonl, write_json
from lines.fingerprints import fingerprint
from lines.models import load_causal_lm

from ..distributed import Ranks
from .cache import SweepCache
from .config import RunConfig
from .evaluate import Objective, PointEvaluator
from .plan import EVALUATION, VALIDATION, Point, evaluation_points, validation_points
from .selection import select_candidates

log = logging.getLogger(__name__)


def build_objectives(cfg: RunConfig, base_model) -> list[Objective]:
    objectives = []
    for spec, is_metric in [(r, False) for r in cfg.rewards] + [(m, True) for m in cfg.metrics]:
        spec = dict(spec)
        where = f"{'metrics' if is_metric else 'rewards'}[{spec.get('name', '?')}]"
        if spec.get("type") == "kl" and not spec.get("base"):
            reward = build_reward(spec, where, base_model=base_model)
        else:
            reward = build_reward(spec, where)
        objectives.append(Objective(reward, spec, is_metric))
    return objectives


def run_sweep(cfg: RunConfig, base_model_path: str, policy_paths: list[str],
              prompt_split: dict[str, list[Prompt]], ranks: Ranks | None = None, progress: bool = True,
              references: dict[str, str] | None = None) -> dict:
    """Evaluate every planned point (cached), return {"selection", "points": [results on rank 0]}.

    `references`: further policies shown beside the fronts but not merged (e.g. the MORL baseline)."""
    ranks = ranks or Ranks()
    sweep_dir = cfg.run_dir / "sweep"
    cache = SweepCache(sweep_dir)
    memo = cfg.run_dir / ".fingerprints.json"
    fingerprints = {"base": fingerprint(base_model_path, memo),
                    "policies": [fingerprint(p, memo) for p in policy_paths]}
    generation = parse_generation_config(cfg.generation)
    generator = make_generator(base_model_path, generation)
    base_for_metrics = _load_base_for_metrics(cfg, base_model_path)
    objectives = build_objectives(cfg, base_for_metrics)
    with MergeInputs(base_model_path, policy_paths) as inputs:
        adapter_dir = _adapter_route(cfg, inputs, generator, sweep_dir, policy_paths)
        max_rank = generator.config.vllm.max_lora_rank if getattr(generator, "model", None) is None else None
        evaluator = PointEvaluator(generator, inputs, objectives, cache, fingerprints, generation.model_dump(),
                                   policy_model_factory=lambda: load_causal_lm(base_model_path, generation.device, generation.dtype, "θ0"),
                                   adapter_dir=adapter_dir, max_adapter_rank=max_rank)
        _fit_reward_normalizers(evaluator, objectives, prompt_split[EVALUATION], cfg)
        batch = cfg.sweep.points_per_batch if adapter_dir is not None else 1

        def run_phase(points: list[Point], split: str, desc: str) -> list[dict]:
            prompts = prompt_split[split]
            mine = ranks.share(points)
            with tqdm(total=len(mine), desc=f"{desc} (rank {ranks.rank})", disable=not progress) as bar:
                for start in range(0, len(mine), batch):
                    evaluator.evaluate_many(mine[start:start + batch], prompts)
                    bar.update(len(mine[start:start + batch]))
            ranks.barrier()
            # Every rank reads every result back from the shared cache (cheap, identical everywhere).
            return evaluator.evaluate_many(points, prompts)

        val_points = validation_points(cfg)
        selection = {}
        if val_points:
            if not prompt_split[VALIDATION]:
                from ..errors import PipelineError

                raise PipelineError("a variant has a beta/lambda grid but prompts.n_validation is 0; "
                                    "give validation prompts to choose on")
            val_results = run_phase(val_points, VALIDATION, "validation sweep")
            selection = select_candidates(val_results, cfg.reward_names)
        chosen = {variant: s["chosen"] for variant, s in selection.items()}
        eval_results = run_phase(evaluation_points(cfg, chosen), EVALUATION, "evaluation sweep")
        for name, path in (references or {}).items():
            eval_results.append(_evaluate_reference(name, path, base_model_path, generator, objectives, cache,
                                                    memo, generation.model_dump(), prompt_split[EVALUATION], ranks))
    if ranks.is_main:
        write_points(cfg, eval_results, selection, val_results if val_points else [])
    ranks.barrier()
    return {"selection": selection, "points": eval_results}


def _evaluate_reference(name: str, path: str, base_model_path: str, generator, objectives, cache, memo,
                        generation: dict, prompts, ranks: Ranks) -> dict:
    """A policy evaluated as it is (θ0 + its own task vector), on rank 0, then read back by every rank."""
    fingerprint = {"base": fingerprint(base_model_path, memo), "policies": [fingerprint(path, memo)]}
    point = Point("reference", name, EVALUATION, (1.0,),
                  {"method": "task_arithmetic", "weights": [1.0], "parameters": {}, "lines": None})
    with MergeInputs(base_model_path, [path]) as inputs:
        evaluator = PointEvaluator(generator, inputs, objectives, cache, fingerprint, generation,
                                   policy_model_factory=lambda: load_causal_lm(base_model_path, generation.device, generation.dtype, "θ0"))
        if ranks.is_main:
            evaluator.evaluate(point, prompts)
            evaluator.restore_base(prompts)  # leave θ0 in the live model for whoever comes next
        ranks.barrier()
        return evaluator.evaluate(point, prompts)


def _adapter_route(cfg: RunConfig, inputs: MergeInputs, generator, sweep_dir: Path, policy_paths: list[str]):
    """The directory for soup adapters when points are served as adapters, else None (dense route)."""
    all_adapters = len(inputs.adapters) == len(inputs.policies)
    route = cfg.sweep.lora_route
    if route == "adapter" and not all_adapters:
        from ..errors import PipelineError

        raise PipelineError("sweep.lora_route is adapter but not every policy is a LoRA adapter; use dense or auto")
    if route == "dense" or not all_adapters:
        return None
    if getattr(generator, "model", None) is not None:  # transformers: the live model becomes a peft model over θ0
        from peft import PeftModel

        generator.model = PeftModel.from_pretrained(generator.model, policy_paths[0], adapter_name="policy_0").eval()
    log.info("sweep: LoRA policies, every point served as its exact soup adapter (the base is never rewritten)")
    return sweep_dir / "adapters"


def _fit_reward_normalizers(evaluator: PointEvaluator, objectives, prompts, cfg: RunConfig) -> None:
    """Rewards normalised by z-score against θ0's responses fit on θ0's evaluation samples (generated once)."""
    needing = [o.reward for o in objectives if not o.reward.normalizer.fitted]
    if not needing:
        return
    base = next(p for p in evaluation_points(cfg, {}) if p.variant == "base")
    gen_key = evaluator.gen_key(base, prompts)
    rows = evaluator.cache.load_samples(gen_key)
    if rows is None:
        evaluator._generate([base], [gen_key], prompts)
        rows = evaluator.cache.load_samples(gen_key)
    with evaluator._policy(base, gen_key, prompts) as policy:
        fit_normalizers(needing, [r["prompt"] for r in rows], [r["response"] for r in rows], policy=policy)


def _load_base_for_metrics(cfg: RunConfig, base_model_path: str):
    if any(m.get("type") == "kl" and not m.get("base") for m in cfg.metrics + cfg.rewards):
        return load_causal_lm(base_model_path, "auto", "auto", "θ0 (for kl)")
    return None


def write_points(cfg: RunConfig, results: list[dict], selection: dict, validation: list[dict]) -> None:
    """runs/<name>/sweep/points.jsonl (one row per evaluation point) and plan.json (selection, validation)."""
    sweep_dir = cfg.run_dir / "sweep"
    rows = []
    for r in results:
        row = {k: r[k] for k in ("key", "variant", "candidate", "front", "split", "weights")}
        row["lines"] = r["merge"].get("lines")
        row["objectives"] = {name: {k: v for k, v in o.items() if k != "per_prompt"}
                             for name, o in r["objectives"].items()}
        rows.append(row)
    write_jsonl(sweep_dir / "points.jsonl", rows)
    write_json(sweep_dir / "plan.json", {
        "selection": selection, "rewards": cfg.reward_names,
        "metrics": [m["name"] for m in cfg.metrics],
        "evaluation_keys": [r["key"] for r in results], "validation_keys": [r["key"] for r in validation]})
