"""Run the sweep: validation phase (select β / λ), evaluation phase, reference policies, gathered on rank 0."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from tqdm.auto import tqdm

from lines import MergeInputs, layer_diagnostics
from lines.atomic import write_json, write_jsonl
from lines.fingerprints import fingerprint, run_memo, stable_hash
from lines.models import load_causal_lm

from ..distributed import Ranks, on_main
from ..generation.backend_choice import make_generator
from ..prompts import EVALUATION, VALIDATION, Prompt
from ..config.run import RunConfig
from .cache import SweepCache
from .evaluate import PointEvaluator
from .objectives import build_objectives
from .plan import Point, evaluation_points, matched_points, needs_matching, validation_points
from .selection import select_candidates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferencePolicy:
    """A policy shown beside the fronts but not merged (e.g. the MORL baseline), evaluated as it is.
    `reward_weights`: the mixture of rewards it was trained on, when it has one (its row's weight columns)."""

    name: str
    path: str
    reward_weights: dict[str, float] | None = None


def run_sweep(cfg: RunConfig, base_model_path: str, policy_paths: list[str],
              prompt_split: dict[str, list[Prompt]], ranks: Ranks | None = None, progress: bool = True,
              references: list[ReferencePolicy] = ()) -> dict:
    """Evaluate every planned point (cached), return {"selection", "points": [results on every rank]}."""
    ranks = ranks or Ranks()
    sweep_dir = cfg.run_dir / "sweep"
    cache = SweepCache(sweep_dir)
    memo = run_memo(cfg.run_dir)
    generation = cfg.generation
    backend = make_generator(base_model_path, generation)
    # Metric models (θ0 for KL, the policy copy for perplexity) go beside the engine, in the generation dtype.
    device = generation.device
    if backend.identity.get("backend") == "vllm":
        from ..generation.engine_devices import metric_device

        device = metric_device(device, generation.vllm.tensor_parallel_size)
    kl_base = None
    if any(spec.wants_base_model() for spec in cfg.objectives):
        kl_base = load_causal_lm(base_model_path, device, generation.dtype, "θ0 (for kl)")
    objectives = build_objectives(cfg.rewards, cfg.metrics, kl_base, memo)

    def evaluator_for(inputs: MergeInputs, policies: list[str]) -> PointEvaluator:
        models = {"base": fingerprint(base_model_path, memo), "policies": [fingerprint(p, memo) for p in policies]}
        return PointEvaluator(
            backend, inputs, base_model_path, policies, objectives, cache, models,
            {**generation.sampling(), "engine": backend.identity},
            policy_copy_factory=lambda: load_causal_lm(base_model_path, device, generation.dtype, "θ0"),
            adapter_dir=sweep_dir / "adapters", lora_route=cfg.sweep.lora_route)

    try:
        with MergeInputs(base_model_path, policy_paths) as inputs:
            key = stable_hash([fingerprint(p, memo) for p in [base_model_path, *policy_paths]])
            on_main(lambda: save_diagnostics(cfg, inputs, key), "writing the task-vector diagnostics")
            evaluator = evaluator_for(inputs, policy_paths)
            base_point = next(p for p in evaluation_points(cfg, {}) if p.variant == "base")
            evaluator.fit_normalizers(base_point, prompt_split[EVALUATION], on_main)
            batch = cfg.sweep.points_per_batch if evaluator.router.adapters else 1

            def run_phase(points: list[Point], split: str, desc: str) -> list[dict]:
                prompts = prompt_split[split]
                mine = ranks.share(points)
                log.info("%s: rank %d evaluates %d of %d points", desc, ranks.rank, len(mine), len(points))

                def evaluate_mine() -> None:
                    with tqdm(total=len(mine), desc=f"{desc} (rank {ranks.rank})", disable=not progress) as bar:
                        for start in range(0, len(mine), batch):
                            evaluator.evaluate_many(mine[start:start + batch], prompts)
                            bar.update(len(mine[start:start + batch]))

                ranks.together(evaluate_mine, desc)  # a rank's failing point stops every rank
                # Every rank reads every result back from the shared cache (cheap, identical everywhere).
                return evaluator.evaluate_many(points, prompts)

            val_points = validation_points(cfg)
            val_results, selection = [], {}
            if val_points:
                val_results = run_phase(val_points, VALIDATION, "validation sweep")
                selection = select_candidates(val_results, cfg.reward_names)
            chosen = {variant: s["chosen"] for variant, s in selection.items()}
            planned = evaluation_points(cfg, chosen)
            eval_results = run_phase(planned, EVALUATION, "evaluation sweep")
            if cfg.sweep.uniform_control.matched:
                lines_points = [p for p in planned if needs_matching(p)]
                ranks.together(lambda: [evaluator.profiles.matched_lambda(point.merge_spec())  # each rank its share
                                        for point in ranks.share(lines_points)], "matching the uniform controls")
                lambdas = [evaluator.profiles.matched_lambda(p.merge_spec()) for p in lines_points]
                eval_results += run_phase(matched_points(lines_points, lambdas), EVALUATION, "matched controls")
        for reference in references:
            with MergeInputs(base_model_path, [reference.path]) as inputs:
                point = reference_point(reference, cfg.reward_names)
                evaluator = evaluator_for(inputs, [reference.path])
                eval_results.append(on_main(lambda: evaluator.evaluate(point, prompt_split[EVALUATION]),
                                            f"evaluating the reference policy '{reference.name}'"))
    finally:
        backend.close()
    on_main(lambda: write_points(cfg, eval_results, selection, val_results), "writing points.jsonl")
    return {"selection": selection, "points": eval_results}


def reference_point(reference: ReferencePolicy, rewards: list[str]) -> Point:
    """θ0 + the reference's own task vector. Its `weights` are the reward mixture it was trained on (aligned with
    the rewards, so its row's weight columns mean what they mean for the soups), or empty when it has none."""
    weights = tuple(float(reference.reward_weights.get(r, 0.0)) for r in rewards) if reference.reward_weights else ()
    return Point("reference", reference.name, EVALUATION, weights,
                 {"method": "task_arithmetic", "weights": [1.0], "parameters": {}, "lines": None})


def save_diagnostics(cfg: RunConfig, inputs: MergeInputs, key: str) -> None:
    """Per-layer task-vector diagnostics, computed once per set of inputs (a re-run reads them back)."""
    import json

    path = cfg.run_dir / "sweep" / "diagnostics.json"
    if path.exists():
        try:
            if json.loads(path.read_text()).get("key") == key:
                return
        except ValueError:
            pass  # a damaged file is recomputed
    write_json(path, {"key": key, **layer_diagnostics(inputs).to_dict()}, indent=None)


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
        "selection": selection, "rewards": cfg.reward_names, "metrics": [m.name for m in cfg.metrics],
        "evaluation_keys": [r["key"] for r in results], "validation_keys": [r["key"] for r in validation]})
