"""The main job: rewarded-soup sweeps with and without LiNeS, Pareto fronts and a report.

    accelerate launch pipelines/merge_policies.py --config configs/demo.yaml [--set sweep.points=5 ...]
    python pipelines/merge_policies.py --config my.yaml --check      # validate config + machine, print the plan

Stages (each reads and writes plain artifacts under runs/<run_name>/, so a re-run or a resumed run redoes
nothing that is done): (1) train θ0 and one policy per reward, when the config has a `training` section,
or take the given checkpoints; (2) sweep: every point merged in memory into the live generation model,
generated, scored, cached; (3) report. Under `accelerate launch` with several processes, points are split
across ranks and gathered on rank 0. The whole config is checked before anything runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Run as a script (`accelerate launch pipelines/merge_policies.py`): make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lines.atomic import write_text  # noqa: E402
from lines.errors import UserError, report_user_error  # noqa: E402
from lines.ranks import leave_process_group  # noqa: E402
from pipelines.config.checks import check_machine  # noqa: E402
from pipelines.config.load import config_for_seed, load_run_config  # noqa: E402

log = logging.getLogger("merge_policies")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set sweep.points=5 (repeatable)")
    parser.add_argument("--seeds", metavar="S,S,...",
                        help="replicate the study over these seeds, e.g. 0,1,2 (same as `seeds:` in the config)")
    parser.add_argument("--check", action="store_true",
                        help="validate the config without weights (and this machine, or the one --gpus describes), "
                             "print the plan, then exit")
    parser.add_argument("--accelerate-config", default=None, metavar="FILE",
                        help="with --check: the accelerate config the run will be launched with")
    parser.add_argument("--gpus", type=int, default=None,
                        help="with --check on a machine without GPUs: how many the target machine has")
    parser.add_argument("--gpu-memory", type=float, default=None, metavar="GB",
                        help="with --check on a machine without GPUs: memory of one target GPU, in GB")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        overrides = list(args.overrides) + ([f"seeds=[{args.seeds}]"] if args.seeds else [])
        if args.check:
            from pipelines.check import check_and_plan

            plan = check_and_plan(args.config, overrides, args.accelerate_config, args.gpus, args.gpu_memory)
            print(plan.render())
            print(f"config ok: {args.config}")
            return 0
        cfg = load_run_config(args.config, overrides)
        check_machine(cfg)
        if cfg.seeds:
            study(cfg, progress=not args.quiet)
        else:
            run(cfg, progress=not args.quiet)
    except UserError as exc:
        code = report_user_error(exc)
        leave_process_group(wait=False)
        return code
    leave_process_group(wait=True)
    return 0


def run(cfg, progress: bool = True) -> None:
    from pipelines.distributed import Ranks, on_main
    from pipelines.prompts import EVALUATION, VALIDATION, prompt_split
    from pipelines.report import build_report
    from pipelines.stages import resolve_checkpoints, resolve_metric_specs
    from pipelines.sweep.runner import run_sweep

    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    ranks = Ranks()
    on_main(lambda: write_text(cfg.run_dir / "config.yaml", cfg.to_yaml()), "writing config.yaml")
    base, policies, references = resolve_checkpoints(cfg)
    # The main process writes the held-out texts; every rank reads them once they are there (or stops with it).
    on_main(lambda: resolve_metric_specs(cfg, write=True) and None, "writing the held-out texts")
    cfg = resolve_metric_specs(cfg, write=False)
    prompts = prompt_split(cfg.prompts)
    if ranks.is_main:
        log.info("prompts: %d evaluation, %d validation", len(prompts[EVALUATION]), len(prompts[VALIDATION]))
    run_sweep(cfg, base, policies, prompts, ranks, progress=progress, references=references)
    if ranks.is_main:
        report = build_report(cfg.run_dir)
        print(f"report: {report / 'report.html'} (also report.md, points.csv, pareto.png)")


def study(cfg, progress: bool = True) -> None:
    """The whole job once per seed, then the pooled study report (every seed's verdicts and the pooled answer)."""
    from pipelines.distributed import Ranks, on_main
    from pipelines.report.study import build_study_report

    ranks = Ranks()
    on_main(lambda: write_text(cfg.run_dir / "config.yaml", cfg.to_yaml()), "writing config.yaml")
    seed_dirs = {}
    for seed in cfg.seeds:
        seed_cfg = config_for_seed(cfg, seed)
        log.info("study: seed %d of %s → %s", seed, cfg.seeds, seed_cfg.run_dir)
        run(seed_cfg, progress=progress)
        seed_dirs[seed] = seed_cfg.run_dir
    if ranks.is_main:
        report = build_study_report(cfg.run_dir / "study", seed_dirs)
        print(f"study report: {report / 'report.html'} (also report.md, pooled.json, forest.png)")


if __name__ == "__main__":
    sys.exit(main())
