"""Where one seed of the demo spends its time (RESULTS.md part 8): the whole job for one seed of configs/demo.yaml,
run in this process with a wall-clock timer around each stage and cProfile over all of it.

    python benchmarks/demo_cost.py [--seed 0] [--out /tmp/demo_cost] [--set KEY=VALUE ...] [--json cost.json]

Stages timed (nested times are included in their parent): θ0's SFT (prepare_base), each policy's DPO training with
its evaluation (train_policy), θ0's evaluation (evaluate_base), the sweep (run_sweep) split into its validation,
evaluation and matched phases and, across them, generation (PointGenerator.generate) and scoring
(PointScorer.score), and the report (build_report). Then cProfile's top functions by cumulative and own time.
Run on a quiet machine; the load (os.getloadavg) is printed with the figures.
"""
from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import os
import pstats
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIMES: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def timed(owner, attribute: str, label: str) -> None:
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - start
            CALLS[label] += 1

    setattr(owner, attribute, wrapper)


def instrument() -> None:
    import pipelines.job as job
    import pipelines.sweep.runner as runner
    import pipelines.training.run as training
    from pipelines.sweep.generate import PointGenerator
    from pipelines.sweep.score import PointScorer

    timed(training, "prepare_base", "training: θ0 SFT (prepare_base)")
    timed(training, "evaluate_base", "training: θ0 evaluation")
    timed(training, "train_policy", "training: policies (DPO + evaluation)")
    timed(job, "resolve_checkpoints", "training: total")
    timed(job, "run_sweep", "sweep: total")
    timed(runner, "validation_phase", "sweep: validation phase (β, λ chosen)")
    timed(runner, "evaluation_phase", "sweep: evaluation phase")
    timed(runner, "matched_phase", "sweep: matched controls")
    timed(PointGenerator, "generate", "sweep: generation (all phases)")
    timed(PointScorer, "score", "sweep: scoring (all phases)")
    timed(job, "build_report", "report")
    timed(job, "resolve_metric_texts", "held-out texts")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--out", default="/tmp/demo_cost")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--json", default=None, help="write the stage times here")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipelines.config.load import load_run_config
    from pipelines.job import run

    shutil.rmtree(Path(args.out), ignore_errors=True)
    overrides = [f"output_dir={args.out}", f"seed={args.seed}", f"generation.seed={args.seed}", *args.overrides]
    cfg = load_run_config(args.config, overrides)
    instrument()
    load_before = os.getloadavg()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    run(cfg, progress=False)
    profiler.disable()
    total = time.perf_counter() - start
    load_after = os.getloadavg()
    print(f"\none seed of {args.config} (seed {args.seed}): {total:.1f} s wall; load average before "
          f"{load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n")
    print("| stage | seconds | share | calls |\n|---|---|---|---|")
    for label in sorted(TIMES, key=lambda k: -TIMES[k]):
        print(f"| {label} | {TIMES[label]:.1f} | {TIMES[label] / total:.0%} | {CALLS[label]} |")
    for key in ("cumulative", "tottime"):
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats(key).print_stats(args.top)
        print(f"\n### top {args.top} by {key}\n")
        print("\n".join(line for line in stream.getvalue().splitlines() if line.strip())[:6000])
    if args.json:
        Path(args.json).write_text(json.dumps({"total_s": total, "load": [load_before, load_after],
                                               "stages": dict(TIMES), "calls": dict(CALLS)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
