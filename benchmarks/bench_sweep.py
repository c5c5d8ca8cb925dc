"""Sweep overhead: per point, the time outside generation and scoring, in-memory route vs the naive route.

    python benchmarks/bench_sweep.py            # (run through `make bench` / run_all.py, which writes RESULTS.md)

An 11-point rewarded-soup sweep (weights 1.0, 0.9, …, 0.0 on two policies, linear merge, LiNeS α auto, β 0.5)
on the demo-size Llama (benchmarks/demo_model.py), 128 prompts × 48 new tokens, VADER + length rewards.

- in-memory: the real per-point path of the sweep, `pipelines.sweep.evaluate.PointEvaluator.evaluate`, around one
  live transformers generator (θ0 loaded once), with a fresh cache directory; timers are wrapped around the
  functions it calls (`merge_into_model`, the generator's `generate`, `score_rewards`), nothing in pipelines/ is
  changed. "other" is the rest of `evaluate`: keys, cache reads and writes, summaries.
- naive: per point, `lines.merge` writes a merged checkpoint, `make_generator(path)` loads it
  (`AutoModelForCausalLM.from_pretrained`), then the same generate and score, the same summary, and the
  checkpoint is deleted.

Overhead fraction of a point = (total − generation − scoring) / total. Both routes run in one process, interleaved
(in-memory first in even repeats, naive first in odd ones); per point, the repeat with the median total is
reported (its phases add up to its total), and the worst point of any repeat as well.
Both routes must produce identical responses (same weights, same seeds): checked and reported.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import demo_model  # noqa: E402  (sets HF_HUB_OFFLINE before transformers is imported)
import machine_load  # noqa: E402

BETA = 0.5
LINES = {"alpha": "auto", "beta": BETA}
REWARDS = [{"name": "positive", "type": "vader"}, {"name": "long", "type": "length"}]
TARGET = 0.05


def generation_config(batch_size: int, max_new_tokens: int) -> dict:
    return {"backend": "transformers", "temperature": 1.0, "max_new_tokens": max_new_tokens, "n": 1, "seed": 0,
            "batch_size": batch_size}


def sweep_weights(points: int) -> list[float]:
    return [round(1.0 - i / (points - 1), 10) for i in range(points)]


class PhaseTimer:
    """Accumulates seconds per phase for the point being evaluated."""

    def __init__(self):
        self.current: dict[str, float] = {}

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[phase] = self.current.get(phase, 0.0) + time.perf_counter() - start
        return timed


@contextlib.contextmanager
def patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def point_record(weight: float, phases: dict, total: float) -> dict:
    rec = {"weight": weight, "total_s": total}
    for phase in ["merge", "load", "generate", "score"]:
        rec[f"{phase}_s"] = phases.get(phase, 0.0)
    rec["other_s"] = max(0.0, total - sum(rec[f"{p}_s"] for p in ["merge", "load", "generate", "score"]))
    rec["overhead_s"] = total - rec["generate_s"] - rec["score_s"]
    rec["overhead_frac"] = rec["overhead_s"] / total
    return rec


def run_in_memory(paths: dict, prompts, rewards, gen_cfg: dict, cache_dir: Path, weights: list[float]) -> dict:
    """The sweep's own per-point path: PointEvaluator.evaluate on one live model, timed phase by phase."""
    from lines import MergeInputs
    from lines.fingerprints import fingerprint
    from pipelines.generation import transformers_backend
    from pipelines.generation.backend_choice import make_generator
    from pipelines.config.generation import parse_generation_config
    from pipelines.prompts import EVALUATION
    from pipelines.sweep import score as score_mod
    from pipelines.sweep.cache import SweepCache
    from pipelines.sweep.evaluate import PointEvaluator
    from pipelines.sweep.objectives import Objective
    from pipelines.sweep.plan import Point

    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    # What run_sweep does once per sweep: fingerprints, the live generator, the inputs, the evaluator.
    memo = cache_dir / "fingerprints.json"
    fingerprints = {"base": fingerprint(paths["base"], memo),
                    "policies": [fingerprint(p, memo) for p in paths["policies"]]}
    generation = parse_generation_config(gen_cfg)
    generator = make_generator(str(paths["base"]), generation)
    objectives = [Objective(r, spec, False) for r, spec in zip(rewards, REWARDS)]
    timer = PhaseTimer()
    responses = []
    generate = generator.generate

    def generate_and_keep(*args, **kwargs):
        rows = generate(*args, **kwargs)
        responses.append([r.response for r in rows])
        return rows

    points = []
    with MergeInputs(paths["base"], paths["policies"]) as inputs, \
            patched(transformers_backend, "merge_into_model",
                    timer.wrap("merge", transformers_backend.merge_into_model)), \
            patched(score_mod, "score_rewards", timer.wrap("score", score_mod.score_rewards)), \
            patched(generator, "generate", timer.wrap("generate", generate_and_keep)):
        evaluator = PointEvaluator(generator, inputs, str(paths["base"]), [str(p) for p in paths["policies"]],
                                   objectives, SweepCache(cache_dir), fingerprints, generation.model_dump(),
                                   policy_copy_factory=lambda: None)
        setup = time.perf_counter() - start
        for w in weights:
            merge = {"method": "linear", "weights": [w, round(1.0 - w, 10)], "parameters": {}, "lines": LINES}
            point = Point("lines", "", EVALUATION, (w, round(1.0 - w, 10)), merge)
            timer.current = {}
            t0 = time.perf_counter()
            evaluator.evaluate(point, prompts)
            points.append(point_record(w, timer.current, time.perf_counter() - t0))
    generator.close()
    return {"setup_s": setup, "points": points, "responses": responses}


def run_naive(paths: dict, prompts, rewards, gen_cfg: dict, out_root: Path, weights: list[float]) -> dict:
    """Per point: write a merged checkpoint, load it, generate, score, summarise, delete the checkpoint."""

    import lines
    from pipelines.generation.backend_choice import make_generator
    from pipelines.summary import summarize
    from reward_models import score_rewards

    shutil.rmtree(out_root, ignore_errors=True)
    out_root.mkdir(parents=True)
    points, responses = [], []
    for i, w in enumerate(weights):
        phases = {}
        t0 = time.perf_counter()
        recipe = lines.parse_recipe({
            "base_model": str(paths["base"]), "method": "linear", "lines": LINES,
            "models": [{"model": str(paths["policies"][0]), "weight": w},
                       {"model": str(paths["policies"][1]), "weight": round(1.0 - w, 10)}]})
        out = out_root / f"point-{i:02d}"
        t = time.perf_counter()
        lines.merge(recipe, out, progress=False)
        phases["merge"] = time.perf_counter() - t
        t = time.perf_counter()
        generator = make_generator(str(out), gen_cfg)
        phases["load"] = time.perf_counter() - t
        t = time.perf_counter()
        rows = generator.generate(prompts)
        phases["generate"] = time.perf_counter() - t
        texts, resp = [r.prompt for r in rows], [r.response for r in rows]
        t = time.perf_counter()
        scores = score_rewards(rewards, texts, resp)
        phases["score"] = time.perf_counter() - t
        summary = {name: summarize(s.values, [r.prompt_id for r in rows], [p.prompt_id for p in prompts])
                   for name, s in scores.items()}
        (out_root / f"point-{i:02d}.json").write_text(json.dumps({"weights": [w, 1 - w], "objectives": summary}))
        generator.close()
        del generator
        shutil.rmtree(out)
        points.append(point_record(w, phases, time.perf_counter() - t0))
        responses.append(resp)
    return {"setup_s": 0.0, "points": points, "responses": responses}


def warm_up(paths: dict, prompts, rewards, gen_cfg: dict, work: Path) -> None:
    """Imports, the VADER lexicon, the first generate call and a first merge/load: paid once, by neither route."""
    import lines
    from pipelines.generation.backend_choice import make_generator
    from reward_models import score_rewards

    out = work / "warm-up"
    shutil.rmtree(out, ignore_errors=True)
    lines.merge(lines.parse_recipe({"base_model": str(paths["base"]), "lines": LINES, "models": [
        {"model": str(p), "weight": 0.5} for p in paths["policies"]]}), out, progress=False)
    generator = make_generator(str(out), gen_cfg)
    rows = generator.generate(prompts[:8])
    score_rewards(rewards, [r.prompt for r in rows], [r.response for r in rows])
    with lines.MergeInputs(paths["base"], paths["policies"]) as inputs:
        lines.merge_into_model(generator.model, inputs, lines.MergeSpec(weights=[0.5, 0.5], lines=LINES))
    shutil.rmtree(out)


def median_points(runs: list[dict]) -> list[dict]:
    """Per point, the repeat whose total is the median (the lower middle one for an even count): one real
    measurement, so its phases add up to its total (medians taken column by column would not)."""
    out = []
    for i in range(len(runs[0]["points"])):
        recs = sorted((r["points"][i] for r in runs), key=lambda rec: rec["total_s"])
        out.append(dict(recs[(len(recs) - 1) // 2]))
    return out


def summarize_route(runs: list[dict]) -> dict:
    points = median_points(runs)
    sweep_totals = [r["setup_s"] + sum(p["total_s"] for p in r["points"]) for r in runs]
    all_fracs = [p["overhead_frac"] for r in runs for p in r["points"]]
    total = sum(p["total_s"] for p in points)
    return {
        "points": points,
        "setup_s": statistics.median(r["setup_s"] for r in runs),
        "sweep_total_s": statistics.median(sweep_totals),
        "runs_sweep_total_s": [round(t, 3) for t in sweep_totals],
        "phase_totals_s": {k: sum(p[f"{k}_s"] for p in points) for k in ["merge", "load", "generate", "score", "other"]},
        "overhead_frac_sweep": sum(p["overhead_s"] for p in points) / total,
        "overhead_s_per_point": sum(p["overhead_s"] for p in points) / len(points),
        "overhead_frac_max_point": max(p["overhead_frac"] for p in points),
        "overhead_frac_max_single_run": max(all_fracs),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--points", type=int, default=11)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default). 1 by default: on a shared 2-core machine, "
                             "multi-threaded torch timings mostly measure other processes (see RESULTS.md part 4)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from pipelines.prompts import Prompt
    from reward_models import build_rewards

    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work / "sweep"
    work.mkdir(parents=True, exist_ok=True)
    print("[sweep] building the demo model", flush=True)
    paths = demo_model.build(args.work / "demo")
    prompts = [Prompt(i, t) for i, t in demo_model.prompts(args.prompts)]
    rewards = build_rewards(REWARDS)
    gen_cfg = generation_config(args.batch_size, args.max_new_tokens)
    weights = sweep_weights(args.points)
    probe = machine_load.LoadProbe()
    warm_up(paths, prompts, rewards, gen_cfg, work)
    runs = {"in_memory": [], "naive": []}
    for r in range(args.repeats):
        order = ["in_memory", "naive"] if r % 2 == 0 else ["naive", "in_memory"]
        for route in order:
            print(f"[sweep] repeat {r + 1}/{args.repeats}: {route} route, {len(weights)} points", flush=True)
            if route == "in_memory":
                run = run_in_memory(paths, prompts, rewards, gen_cfg, work / f"cache-{r}", weights)
            else:
                run = run_naive(paths, prompts, rewards, gen_cfg, work / "naive", weights)
            runs[route].append(run)
            print(f"[sweep]   {sum(p['total_s'] for p in run['points']):.1f} s, overhead "
                  f"{100 * sum(p['overhead_s'] for p in run['points']) / sum(p['total_s'] for p in run['points']):.1f}%",
                  flush=True)
    load = probe.stop()
    same = all(a == b for ra, rb in zip(runs["in_memory"], runs["naive"])
               for a, b in zip(ra["responses"], rb["responses"]))
    results = {
        "model": demo_model.describe(args.work / "demo"), "points": args.points, "prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(), "weights": weights, "lines": LINES, "rewards": REWARDS,
        "target_overhead_frac": TARGET, "identical_responses": same,
        "load": load,
        "in_memory": summarize_route(runs["in_memory"]), "naive": summarize_route(runs["naive"]),
    }
    results["naive_over_in_memory"] = results["naive"]["sweep_total_s"] / results["in_memory"]["sweep_total_s"]
    results["naive_over_in_memory_per_repeat"] = [
        n / m for n, m in zip(results["naive"]["runs_sweep_total_s"], results["in_memory"]["runs_sweep_total_s"])]
    results["target_met"] = results["in_memory"]["overhead_frac_max_point"] <= TARGET
    print(f"[sweep] in-memory {results['in_memory']['sweep_total_s']:.1f} s "
          f"(overhead {100 * results['in_memory']['overhead_frac_sweep']:.1f}%, worst point "
          f"{100 * results['in_memory']['overhead_frac_max_point']:.1f}%), naive {results['naive']['sweep_total_s']:.1f} s "
          f"(overhead {100 * results['naive']['overhead_frac_sweep']:.1f}%), ratio {results['naive_over_in_memory']:.2f}×; "
          f"identical responses: {same}; {machine_load.describe(load)}", flush=True)
    shutil.rmtree(work / "naive", ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
