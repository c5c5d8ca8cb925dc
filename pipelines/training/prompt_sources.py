"""Training prompts and held-out prompts for the policy stage.

demo: the demo's train split for training and its validation split held out (the test split is left to
the sweep's final report). file: one local prompt file split deterministically with the generation
stage's `split_prompts` (held-out prompts first, by hash of seed and prompt id).
"""
from __future__ import annotations

from ..config.prompts import PromptsConfig, PromptSource
from ..demo.data import demo_prompts
from ..errors import PipelineError
from ..prompts import Prompt, load_prompts, split_prompts
from .errors import TrainingError


def training_prompts(spec: PromptSource, source: str = "config") -> tuple[list[Prompt], list[Prompt]]:
    """(train, held_out) prompt lists, disjoint."""
    if spec.source == "demo":
        try:
            return demo_prompts("train", spec.n_train, spec.seed), demo_prompts("validation", spec.n_eval, spec.seed)
        except ValueError as err:
            raise TrainingError(f"{source}: prompts: {err}; lower prompts.n_train / prompts.n_eval") from None
    config = PromptsConfig(path=spec.path, prompt_field=spec.prompt_field, id_field=spec.id_field, seed=spec.seed)
    try:
        prompts = load_prompts(config)
        held_out, train = split_prompts(prompts, spec.n_eval, spec.n_train, spec.seed)
    except PipelineError as err:
        raise TrainingError(f"{source}: prompts: {err}") from None
    return train, held_out
