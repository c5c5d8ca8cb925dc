"""Glue between the main job's config and the stages: training, prompts."""
from __future__ import annotations

from pathlib import Path

from .errors import PipelineError
from .prompts import Prompt, load_prompt_set
from .sweep.config import RunConfig
from .sweep.plan import EVALUATION, VALIDATION


def prompt_split(cfg: RunConfig) -> dict[str, list[Prompt]]:
    prompt_set = load_prompt_set(cfg.prompts)
    return {EVALUATION: prompt_set.evaluation, VALIDATION: prompt_set.validation}


def train_stage(cfg: RunConfig, config_path: Path) -> tuple[str, list[str]]:
    raise PipelineError("training from the main job is not available yet; give base_model and policies")
