"""A config file to the typed object every stage takes: YAML (with its `extends:` chain) → `--set` overrides →
schema → checks, each section parsed once. A bad config is one error line naming the file and the field.

    cfg = load_run_config("configs/demo.yaml", ["sweep.points=5"])      # the main job's RunConfig
    train = load_config("configs/train_demo.yaml", ["training.max_steps=5"])   # the training stage's TrainConfig
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lines.config_errors import describe_validation_error
from lines.user_files import read_yaml_mapping

from ..errors import PipelineError
from ..training.errors import TrainingError
from .checks import check_config, check_run_config
from .overrides import apply_overrides, read_config
from .run import RunConfig
from .training import TrainConfig


def load_run_config(path: str | Path, overrides: list[str] = (), check_paths: bool = True,
                    hub_ids: str = "reachable") -> RunConfig:
    """The run config of a YAML file with `--set` overrides, validated as a whole (see run.py's docstring).
    `check_paths=False` skips the existence of local files (for a config meant for another machine);
    `hub_ids="well_formed"` accepts a well-formed hub id that is not in the hub cache (fetched where it runs)."""
    path = Path(path)
    data = read_config(path, PipelineError)  # with its `extends:` chain
    return parse_run_config(apply_overrides(data, list(overrides)), str(path), check_paths, hub_ids)


def parse_run_config(data: dict, source: str = "config", check_paths: bool = True,
                     hub_ids: str = "reachable") -> RunConfig:
    try:
        cfg = RunConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise PipelineError(describe_validation_error(exc, source)) from None
    check_run_config(cfg, check_paths, hub_ids)
    return cfg


def config_for_seed(cfg: RunConfig, seed: int) -> RunConfig:
    """The config of one seed of a replicated study: runs/<name>/seed-<s>/, training and sampling seeded by s."""
    data = {**cfg.model_dump(mode="json"), "seeds": None, "seed": seed, "run_name": f"seed-{seed}",
            "output_dir": str(cfg.run_dir), "generation": {**cfg.generation.model_dump(mode="json"), "seed": seed}}
    return parse_run_config(data, cfg.source, check_paths=False)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The training stage's config of a YAML file with `--set` overrides, validated and checked."""
    data = read_yaml_mapping(path, TrainingError)  # (the training stage's files have no `extends:`)
    return parse_config(apply_overrides(data, overrides or []), str(path))


def parse_config(data: Any, source: str = "config") -> TrainConfig:
    """Validate a config dict (after overrides) and check cross-references (reward names, policies, MORL)."""
    if not isinstance(data, dict):
        raise TrainingError(f"{source}: expected a YAML mapping at the top level, got {type(data).__name__}")
    try:
        config = TrainConfig.model_validate({**data, "source": source})
    except ValidationError as err:
        raise TrainingError(describe_validation_error(err, source)) from None
    check_config(config)
    return config
