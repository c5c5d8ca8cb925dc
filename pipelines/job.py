"""The main job end to end: one run, or a study of the run over several seeds.

    run(cfg)     write config.yaml → resolve_checkpoints (train θ0 and the policies, or take them as given)
                 → resolve_metric_texts (the held-out texts of the demo's metrics) → resolve_prompts
                 → run_sweep (plan → every point merged, generated, scored → points.jsonl; sweep/runner.py)
                 → build_report
    study(cfg)   run() once per seed (each under runs/<name>/seed-<s>/), seeds in parallel worker processes with one
                 torch thread each (study.workers; one process per seed at a time), then build_study_report

Every stage reads and writes plain artifacts under runs/<run_name>/, so a re-run or a resumed run redoes nothing that
is done. Under `accelerate launch` every process runs the job: the main process writes shared files, the sweep's
points are split across ranks.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import torch
from tqdm.auto import tqdm

from lines.atomic import write_json, write_jsonl, write_text

from .demo.data import control_texts, demo_corpus, heldout_reviews
from .distributed import Ranks, on_main
from .prompts import EVALUATION, VALIDATION, Prompt, prompt_split
from .report import build_report
from .report.study import build_study_report
from .config.load import config_for_seed
from .config.run import DEMO_CONTROL, DEMO_HELD_OUT, RunConfig
from .sweep.plan import ReferencePolicy
from .stage_times import reset, snapshot, timed
from .sweep.runner import run_sweep
from .training import train_all

log = logging.getLogger(__name__)


def run(cfg: RunConfig, progress: bool = True) -> None:
    """The job once: checkpoints, held-out texts and prompts resolved, the sweep, the report."""
    start = time.time()
    reset()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ranks = Ranks()
    write_resolved_config(cfg)
    base, policies, references = resolve_checkpoints(cfg)
    # The main process writes the held-out texts; every rank reads them once they are there (or stops with it).
    on_main(lambda: resolve_metric_texts(cfg, write=True) and None, "writing the held-out texts")
    cfg = resolve_metric_texts(cfg, write=False)
    prompts = resolve_prompts(cfg, ranks)
    run_sweep(cfg, base, policies, prompts, ranks, progress=progress, references=references)
    if ranks.is_main:
        with timed("report"):
            report = build_report(cfg.run_dir)
        write_json(cfg.run_dir / "timings.json", {"stages": snapshot(), "job_seconds": round(time.time() - start, 1),
                                                   "threads": cfg.threads, "processes": ranks.world})
        print(f"report: {report / 'report.html'} (also report.md, points.csv, pareto.png)")


def study(cfg: RunConfig, progress: bool = True) -> None:
    """The whole job once per seed, then the pooled study report (every seed's verdicts and the pooled answer).

    Seeds are independent replicates: with one launched process and more than one worker (study.workers, default
    the CPU count), they run in worker processes, one torch thread each, a seed per worker at a time; under a
    multi-process launch the processes run each seed together, one seed after another."""
    ranks = Ranks()
    write_resolved_config(cfg)
    seed_dirs = {seed: config_for_seed(cfg, seed).run_dir for seed in cfg.seeds}
    workers = min(len(cfg.seeds), study_workers(cfg))
    if ranks.world == 1 and workers > 1:
        run_seeds_in_workers(cfg, workers, progress)
    else:
        for seed in tqdm(cfg.seeds, desc="study: seeds", disable=not progress or not ranks.is_main):
            log.info("study: seed %d of %s → %s", seed, cfg.seeds, seed_dirs[seed])
            run(config_for_seed(cfg, seed), progress=progress)
    if ranks.is_main:
        report = build_study_report(cfg.run_dir / "study", seed_dirs)
        print(f"study report: {report / 'report.html'} (also report.md, pooled.json, forest.png)")


def study_workers(cfg: RunConfig) -> int:
    return cfg.study.workers or os.cpu_count() or 1


def run_seeds_in_workers(cfg: RunConfig, workers: int, progress: bool) -> None:
    """Every seed's run() in a pool of `workers` fresh processes (spawned: no state shared with this one), each
    with one torch thread; progress is one bar over the seeds. The first seed that fails stops the study with its
    error (the seeds already finished keep their records: a re-run redoes only what is missing)."""
    context = multiprocessing.get_context("spawn")
    data = cfg.model_dump(mode="json")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_seed_worker_init) as pool:
        futures = {pool.submit(_run_seed, data, cfg.source, seed): seed for seed in cfg.seeds}
        try:
            for future in tqdm(as_completed(futures), total=len(futures), desc=f"study: seeds ({workers} workers)",
                               disable=not progress):
                future.result()
                log.info("study: seed %d finished", futures[future])
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _seed_worker_init() -> None:
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _run_seed(data: dict, source: str, seed: int) -> None:
    from .config.load import parse_run_config  # (the worker's own parse: the config travels as plain data)

    cfg = parse_run_config(data, source, check_paths=False)
    seed_cfg = config_for_seed(cfg, seed)
    run(seed_cfg.model_copy(update={"threads": 1}), progress=False)


def write_resolved_config(cfg: RunConfig) -> None:
    """runs/<name>/config.yaml: the config as resolved (defaults, overrides), written by the main process."""
    on_main(lambda: write_text(cfg.run_dir / "config.yaml", cfg.to_yaml()), "writing config.yaml")


def resolve_checkpoints(cfg: RunConfig) -> tuple[str, list[str], list[ReferencePolicy]]:
    """θ0, one policy per reward (in reward order), and reference policies (MORL): trained here or given."""
    if cfg.train_config is None:
        return cfg.base_model, [cfg.policies[name] for name in cfg.reward_names], []
    infos = train_all(cfg.train_config)
    policies = [str(infos[name].path) for name in cfg.reward_names]
    base = str(infos[cfg.reward_names[0]].base_path)
    references = [ReferencePolicy(name, str(info.path), info.reward if isinstance(info.reward, dict) else None)
                  for name, info in infos.items() if name not in cfg.reward_names]
    for name in cfg.reward_names:
        evaluation = infos[name].manifest.get("evaluation", {})
        log.info("policy %s: %s", name, json.dumps(evaluation.get("difference", evaluation))[:300])
    return base, policies, references


def resolve_metric_texts(cfg: RunConfig, write: bool) -> RunConfig:
    """`texts: demo` / `texts: demo-control` → held-out text files under the run directory (reviews, and texts of
    the control domains), written by the process that `write`s (the others read them after a barrier)."""
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
    return set(demo_corpus(sft.data.n, cfg.seed, sft.data.review_share))


def resolve_prompts(cfg: RunConfig, ranks: Ranks) -> dict[str, list[Prompt]]:
    """The sweep's two prompt sets: validation (to choose β / λ on) and evaluation (to measure the fronts on)."""
    prompts = prompt_split(cfg.prompts)
    if ranks.is_main:
        log.info("prompts: %d evaluation, %d validation", len(prompts[EVALUATION]), len(prompts[VALIDATION]))
    return prompts
