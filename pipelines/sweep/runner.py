"""The sweep, phase by phase, on every rank of a launch:

    open_sweep          the live generation engine, the objectives (θ0 loaded beside it for KL), the cache
    fit_zscores         z-score rewards fitted on θ0's samples (one process fits, every process uses the fit)
    validation_phase    every candidate β / λ on the validation prompts, and the one chosen per variant
    evaluation_phase    the chosen fronts, θ0, the single policies and the forgetting study on the evaluation prompts
    matched_phase       the norm-matched uniform control of every LiNeS point
    reference_phase     the reference policies, each evaluated as it is
    write_points        points.jsonl and plan.json (rank 0)

In each phase every rank evaluates its share of the points (merge, generate, score: evaluate.py) into the shared
cache, then reads every result back from it.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from lines import MergeInputs, layer_diagnostics
from lines.atomic import write_json, write_jsonl
from lines.fingerprints import fingerprint, run_memo, stable_hash
from lines.models import load_causal_lm

from ..distributed import Ranks, on_main
from ..generation.backend_choice import make_generator
from ..generation.engine_devices import metric_device
from ..generation.protocol import GenerationBackend
from ..prompts import EVALUATION, VALIDATION, Prompt
from ..config.run import RunConfig
from .cache import SweepCache
from .evaluate import PointEvaluator
from .objectives import Objective, build_objectives
from .plan import (Point, ReferencePolicy, evaluation_points, matched_points, needs_matching, reference_point,
                   validation_points)
from .selection import select_candidates
from .variants import BASE

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    """What every phase shares: the config, this process's rank, the prompt sets, the engine and the objectives."""

    cfg: RunConfig
    base_model_path: str
    prompt_split: dict[str, list[Prompt]]
    ranks: Ranks
    progress: bool
    cache: SweepCache
    memo: Path  # where the run memoises file digests
    backend: GenerationBackend
    metric_device: str
    objectives: list[Objective]

    def evaluator(self, inputs: MergeInputs, policies: list[str]) -> PointEvaluator:
        """An evaluator of merges of `inputs` (θ0 and `policies`) on the sweep's engine."""
        generation, base = self.cfg.generation, self.base_model_path
        models = {"base": fingerprint(base, self.memo), "policies": [fingerprint(p, self.memo) for p in policies]}
        return PointEvaluator(
            self.backend, inputs, base, policies, self.objectives, self.cache, models,
            {**generation.sampling(), "engine": self.backend.identity},
            policy_copy_factory=lambda: load_causal_lm(base, self.metric_device, generation.dtype, "θ0"),
            adapter_dir=self.cache.dir / "adapters", lora_route=self.cfg.sweep.lora_route)

    def evaluate_across_ranks(self, evaluator: PointEvaluator, points: list[Point], split: str, desc: str
                              ) -> list[dict]:
        """Every rank evaluates its share of `points` on the `split` prompts; every rank returns all results."""
        prompts = self.prompt_split[split]
        ranks = self.ranks
        batch = self.cfg.sweep.points_per_batch if evaluator.router.adapters else 1
        mine = ranks.share(points)
        log.info("%s: rank %d evaluates %d of %d points", desc, ranks.rank, len(mine), len(points))

        def evaluate_mine() -> None:
            with tqdm(total=len(mine), desc=f"{desc} (rank {ranks.rank})", disable=not self.progress) as bar:
                for start in range(0, len(mine), batch):
                    evaluator.evaluate_many(mine[start:start + batch], prompts)
                    bar.update(len(mine[start:start + batch]))

        ranks.together(evaluate_mine, desc)  # a rank's failing point stops every rank
        # Every rank reads every result back from the shared cache (cheap, identical everywhere).
        return evaluator.evaluate_many(points, prompts)


def open_sweep(cfg: RunConfig, base_model_path: str, prompt_split: dict[str, list[Prompt]], ranks: Ranks,
               progress: bool) -> Sweep:
    """The generation engine on θ0 and the objectives; the metric models (θ0 for KL, the policy copy for perplexity)
    go beside the engine, in the generation dtype."""
    generation = cfg.generation
    cache = SweepCache(cfg.run_dir / "sweep")
    memo = run_memo(cfg.run_dir)
    backend = make_generator(base_model_path, generation)
    device = generation.device
    if backend.identity.get("backend") == "vllm":
        device = metric_device(device, generation.vllm.tensor_parallel_size)
    kl_base = None
    if any(spec.wants_base_model() for spec in cfg.objectives):
        kl_base = load_causal_lm(base_model_path, device, generation.dtype, "θ0 (for kl)")
    objectives = build_objectives(cfg.rewards, cfg.metrics, kl_base, memo)
    return Sweep(cfg, base_model_path, prompt_split, ranks, progress, cache, memo, backend, device, objectives)


def run_sweep(cfg: RunConfig, base_model_path: str, policy_paths: list[str],
              prompt_split: dict[str, list[Prompt]], ranks: Ranks | None = None, progress: bool = True,
              references: list[ReferencePolicy] = ()) -> dict:
    """Evaluate every planned point (cached), return {"selection", "points": [results on every rank]}."""
    sweep = open_sweep(cfg, base_model_path, prompt_split, ranks or Ranks(), progress)
    try:
        with MergeInputs(base_model_path, policy_paths) as inputs:
            key = stable_hash([fingerprint(p, sweep.memo) for p in [base_model_path, *policy_paths]])
            on_main(lambda: save_diagnostics(cfg, inputs, key), "writing the task-vector diagnostics")
            evaluator = sweep.evaluator(inputs, policy_paths)
            fit_zscores(sweep, evaluator)
            val_results, selection = validation_phase(sweep, evaluator)
            planned, eval_results = evaluation_phase(sweep, evaluator, selection)
            eval_results += matched_phase(sweep, evaluator, planned)
        eval_results += reference_phase(sweep, references)
    finally:
        sweep.backend.close()
        warning = sweep.cache.damage_warning()
        if warning:
            print(warning, file=sys.stderr)
    on_main(lambda: write_points(cfg, eval_results, selection, val_results), "writing points.jsonl")
    return {"selection": selection, "points": eval_results}


def fit_zscores(sweep: Sweep, evaluator: PointEvaluator) -> None:
    """Rewards normalised by z-score without a reference file: fitted on θ0's samples of the evaluation prompts."""
    base_point = next(p for p in evaluation_points(sweep.cfg, {}) if p.variant == BASE)
    evaluator.fit_normalizers(base_point, sweep.prompt_split[EVALUATION], on_main)


def validation_phase(sweep: Sweep, evaluator: PointEvaluator) -> tuple[list[dict], dict]:
    """(results, selection): every candidate of the variants that have several, on the validation prompts, and
    the candidate each variant keeps (none to choose: no results, empty selection)."""
    val_points = validation_points(sweep.cfg)
    if not val_points:
        return [], {}
    val_results = sweep.evaluate_across_ranks(evaluator, val_points, VALIDATION, "validation sweep")
    return val_results, select_candidates(val_results, sweep.cfg.reward_names)


def evaluation_phase(sweep: Sweep, evaluator: PointEvaluator, selection: dict) -> tuple[list[Point], list[dict]]:
    """(points, results): the chosen candidate of every variant, θ0, the single policies and the forgetting study,
    on the evaluation prompts."""
    chosen = {variant: s["chosen"] for variant, s in selection.items()}
    planned = evaluation_points(sweep.cfg, chosen)
    return planned, sweep.evaluate_across_ranks(evaluator, planned, EVALUATION, "evaluation sweep")


def matched_phase(sweep: Sweep, evaluator: PointEvaluator, planned: list[Point]) -> list[dict]:
    """The norm-matched uniform control of every LiNeS point evaluated (none unless the config asks for it)."""
    if not sweep.cfg.sweep.uniform_control.matched:
        return []
    ranks = sweep.ranks
    unmatched = {v.name for v in sweep.cfg.sweep.variants if not v.matched}
    lines_points = [p for p in planned if needs_matching(p) and p.variant not in unmatched]
    ranks.together(lambda: [evaluator.profiles.matched_lambda(point.merge_spec())  # each rank its share
                            for point in ranks.share(lines_points)], "matching the uniform controls")
    lambdas = [evaluator.profiles.matched_lambda(p.merge_spec()) for p in lines_points]
    controls = matched_points(lines_points, lambdas)
    return sweep.evaluate_across_ranks(evaluator, controls, EVALUATION, "matched controls")


def reference_phase(sweep: Sweep, references: list[ReferencePolicy]) -> list[dict]:
    """Each reference policy as it is (θ0 + its own task vector), evaluated by the main process."""
    results = []
    for reference in references:
        with MergeInputs(sweep.base_model_path, [reference.path]) as inputs:
            point = reference_point(reference, sweep.cfg.reward_names)
            evaluator = sweep.evaluator(inputs, [reference.path])
            results.append(on_main(lambda: evaluator.evaluate(point, sweep.prompt_split[EVALUATION]),
                                   f"evaluating the reference policy '{reference.name}'"))
    return results


def save_diagnostics(cfg: RunConfig, inputs: MergeInputs, key: str) -> None:
    """Per-layer task-vector diagnostics, computed once per set of inputs (a re-run reads them back)."""
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
