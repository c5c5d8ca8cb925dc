"""The main job: rewarded-soup sweeps with and without LiNeS, Pareto fronts and a report.

    accelerate launch pipelines/merge_policies.py --config configs/demo.yaml [--set sweep.points=5 ...]
    accelerate launch pipelines/merge_policies.py --config configs/demo.yaml --seeds 0,1,2   # a study over seeds
    python pipelines/merge_policies.py --config my.yaml --check      # validate config + machine, print the plan

The command line of pipelines/job.py, which runs the stages (each reads and writes plain artifacts under
runs/<run_name>/, so a re-run or a resumed run redoes nothing that is done): (1) train θ0 and one policy per
reward, when the config has a `training` section, or take the given checkpoints; (2) sweep: every point merged in
memory into the live generation model, generated, scored, cached; (3) report. Under `accelerate launch` with
several processes, points are split across ranks and gathered on rank 0. The whole config is checked before
anything runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Run as a script (`accelerate launch pipelines/merge_policies.py`): make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lines.errors import STOPS, exit_process, report_stop  # noqa: E402
from lines.ranks import leave_process_group  # noqa: E402
from pipelines.check import check_and_plan  # noqa: E402
from pipelines.config.checks import check_machine  # noqa: E402
from pipelines.config.load import load_run_config  # noqa: E402
from pipelines.job import run, study  # noqa: E402
from pipelines.run_lock import guarded_job  # noqa: E402


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
            plan = check_and_plan(args.config, overrides, args.accelerate_config, args.gpus, args.gpu_memory)
            print(plan.render())
            print(f"config ok: {args.config}")
            return 0
        cfg = load_run_config(args.config, overrides)
        check_machine(cfg)
        # One job per run; a refused write is one line; SIGINT/SIGTERM stop the job, keeping what is finished.
        with guarded_job(cfg.run_dir):
            if cfg.seeds:
                study(cfg, progress=not args.quiet)
            else:
                run(cfg, progress=not args.quiet)
    except STOPS as exc:
        code = report_stop(exc)
        leave_process_group(wait=False)
        return code
    leave_process_group(wait=True)
    return 0


if __name__ == "__main__":
    exit_process(main())
