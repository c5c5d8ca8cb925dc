"""Train one policy per reward from a shared θ0 (rewarded soups' ingredients).

    accelerate launch pipelines/train_policies.py --config configs/train_demo.yaml
    python pipelines/train_policies.py --config configs/train_demo.yaml --set training.max_steps=5

Writes runs/<run>/base/ (θ0), runs/<run>/policies/<reward>/ (checkpoint or adapter + manifest.json). Finished
policies with the same settings are reused, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (accelerate launch / python path/to/file.py)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Before tokenizers is imported (by the training stage below): its thread pool and a later fork (data loader
# workers) would make it warn and turn its parallelism off.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lines.errors import STOPS, exit_process, report_stop  # noqa: E402
from lines.ranks import leave_process_group  # noqa: E402
from pipelines.distributed import is_main_process  # noqa: E402
from pipelines.config.checks import check_environment  # noqa: E402
from pipelines.config.load import load_config  # noqa: E402
from pipelines.run_lock import guarded_job  # noqa: E402
from pipelines.training import train_all  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/train_demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=5 (repeatable)")
    parser.add_argument("--check", action="store_true", help="validate the config and this machine, then exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, args.overrides)
        check_environment(config)
        if args.check:
            print(f"config ok: {args.config}")
            return 0
        # One job per run; a refused write is one line; SIGINT/SIGTERM stop the stage, keeping what is finished.
        with guarded_job(config.run_dir):
            policies = train_all(config)
    except STOPS as exc:
        code = report_stop(exc)
        leave_process_group(wait=False)
        return code
    if is_main_process():
        for name, info in policies.items():
            evaluation = info.evaluation
            own = evaluation.get("own_reward", name)
            base, policy = evaluation.get("base", {}).get(own), evaluation.get("policy", {}).get(own)
            status = "reused" if info.reused else info.source
            numbers = (f"{own}: θ0 {base['mean']:.4f} ± {base['stderr']:.4f} → {policy['mean']:.4f} ± "
                       f"{policy['stderr']:.4f} (n={policy['n']})") if base and policy else ""
            print(f"policy {name} [{info.kind}, {status}] {info.path}  {numbers}")
    leave_process_group(wait=True)
    return 0


if __name__ == "__main__":
    exit_process(main())
