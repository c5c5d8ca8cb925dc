"""The main job: rewarded-soup sweeps with and without LiNeS, Pareto fronts and a report.

    accelerate launch pipelines/merge_policies.py --config configs/demo.yaml [--set sweep.points=5 ...]

Stages (each reads and writes plain artifacts under runs/<run_name>/, so a re-run or a resumed run redoes
nothing that is done): (1) train θ0 and one policy per reward, when the config has a `training` section,
or take the given checkpoints; (2) sweep: every point merged in memory into the live generation model,
generated, scored, cached; (3) report. Under `accelerate launch` with several processes, points are split
across ranks and gathered on rank 0.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

# Run as a script (`accelerate launch pipelines/merge_policies.py`): make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lines import MergeInputs, layer_diagnostics  # noqa: E402
from lines.atomic import write_json, write_text  # noqa: E402
from lines.errors import UserError, report_user_error  # noqa: E402
from pipelines.sweep.config import RunConfig, load_run_config  # noqa: E402
from pipelines.sweep.plan import EVALUATION, VALIDATION  # noqa: E402

log = logging.getLogger("merge_policies")


def resolve_checkpoints(cfg: RunConfig, config_path: Path) -> tuple[str, list[str], dict[str, str]]:
    """θ0, one policy per reward, and reference policies (MORL): trained here (stage 1) or given."""
    if cfg.training is None:
        return cfg.base_model, [cfg.policies[name] for name in cfg.reward_names], {}
    from pipelines.stages import train_stage

    return train_stage(cfg, config_path)


def save_diagnostics(cfg: RunConfig, base: str, policies: list[str]) -> None:
    path = cfg.run_dir / "sweep" / "diagnostics.json"
    with MergeInputs(base, policies) as inputs:
        write_json(path, layer_diagnostics(inputs).to_dict(), indent=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set sweep.points=5 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        from pipelines.report import build_report
        from pipelines.sweep.runner import Ranks, run_sweep

        from pipelines.stages import prompt_split, resolve_metric_specs

        cfg = load_run_config(args.config, args.overrides)
        if cfg.threads:
            import torch

            torch.set_num_threads(cfg.threads)
        ranks = Ranks()
        if ranks.is_main:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(cfg.run_dir / "config.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        base, policies, references = resolve_checkpoints(cfg, Path(args.config))
        if ranks.is_main:
            cfg = resolve_metric_specs(cfg)
        ranks.barrier()
        cfg = resolve_metric_specs(cfg)  # every rank sees the same (now written) held-out file
        prompts = prompt_split(cfg)
        if ranks.is_main:
            log.info("prompts: %d evaluation, %d validation", len(prompts[EVALUATION]), len(prompts[VALIDATION]))
            save_diagnostics(cfg, base, policies)
        run_sweep(cfg, base, policies, prompts, ranks, progress=not args.quiet, references=references)
        if ranks.is_main:
            report = build_report(cfg.run_dir)
            print(f"report: {report / 'report.html'} (also report.md, points.csv, pareto.png)")
    except UserError as exc:
        return report_user_error(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
