"""Prompt sets: rows from a local JSONL/JSON/CSV/Parquet file or a `datasets` name, with a field mapping,
split into a fixed validation part and a fixed evaluation part (the `prompts:` section: pipelines/config/prompts.py).

The split is deterministic and disjoint: prompts are ordered by sha256("<seed>:<prompt_id>"), the first
`n_validation` go to validation and the next `n_eval` to evaluation; each part keeps file order. With an
`id_field`, which prompt lands where does not depend on the order of rows in the file.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from lines.config_errors import describe_validation_error
from lines.errors import first_line
from reward_models.records import column, read_located_records

from .config.prompts import DemoPromptsConfig, PromptsConfig, parse_prompts_config
from .demo.data import demo_prompts
from .errors import PipelineError
from .prompt_record import Prompt


VALIDATION, EVALUATION = "validation", "evaluation"  # the two prompt sets of a sweep


@dataclass
class PromptSet:
    evaluation: list[Prompt]
    validation: list[Prompt]
    source: str
    info: dict = field(default_factory=dict)


def prompt_split(config: PromptsConfig | DemoPromptsConfig) -> dict[str, list[Prompt]]:
    """{"validation": prompts to choose β / λ on, "evaluation": prompts the fronts are measured on}: disjoint
    and fixed by seed."""
    if isinstance(config, DemoPromptsConfig):
        return {VALIDATION: demo_prompts("validation", config.n_validation, config.seed),
                EVALUATION: demo_prompts("test", config.n_eval, config.seed)}
    prompt_set = load_prompt_set(config)
    return {VALIDATION: prompt_set.validation, EVALUATION: prompt_set.evaluation}


def _dataset_rows(config: PromptsConfig) -> list[dict]:
    try:
        import datasets  # deferred: optional (the pipeline extra), and only a `dataset:` source reads it
    except ImportError:
        raise PipelineError("prompts.dataset needs the `datasets` package (pipeline extra)") from None
    try:
        data = datasets.load_dataset(config.dataset, config.dataset_config, split=config.dataset_split)
    except Exception as err:  # datasets raises many types (connection, file, value); all mean "cannot load"
        raise PipelineError(f"prompts: cannot load dataset '{config.dataset}' split '{config.dataset_split}' "
                            f"({first_line(err)}); without hub access use a local file with `path`") from None
    return [dict(row) for row in data]


def load_prompts(config: dict | PromptsConfig) -> list[Prompt]:
    """All prompts of the source (after `limit`), in file order."""
    config = parse_prompts_config(config)
    source = config.path or f"dataset {config.dataset}"
    if config.path:
        rows, where = read_located_records(config.path, error=PipelineError)
    else:
        rows = _dataset_rows(config)
        where = [f"{source} row {i}" for i in range(len(rows))]
    if config.limit is not None:
        rows = rows[:config.limit]
    if not rows:
        raise PipelineError(f"prompts: '{source}' holds no rows; give a file with at least one prompt")
    texts = column(rows, config.prompt_field, source, error=PipelineError)
    for row, location in zip(rows, where):
        check_prompt_text(row[config.prompt_field], location, config.prompt_field)
    ids = column(rows, config.id_field, source, error=PipelineError) if config.id_field else \
        [str(i) for i in range(len(rows))]
    seen: set[str] = set()
    for prompt_id in ids:
        if prompt_id in seen:
            raise PipelineError(f"prompts: '{source}' has the id '{prompt_id}' twice in field '{config.id_field}'; "
                                "ids must be unique")
        seen.add(prompt_id)
    return [Prompt(i, t) for i, t in zip(ids, texts)]


def check_prompt_text(value: object, location: str, field: str) -> None:
    """A prompt is text with something in it: an empty prompt would be generated from nothing and scored like
    any other, and a number, list or mapping is a wrong field mapping, not a prompt."""
    if not isinstance(value, str):
        raise PipelineError(f"{location}: field '{field}' holds a {type(value).__name__}, not a text; point "
                            "prompt_field at the column that holds the prompt")
    if not value.strip():
        raise PipelineError(f"{location}: the prompt in field '{field}' is empty; remove the row or write a prompt")


def split_key(seed: int, prompt_id: str) -> str:
    return hashlib.sha256(f"{seed}:{prompt_id}".encode()).hexdigest()


def split_prompts(prompts: list[Prompt], n_validation: int, n_eval: int | None, seed: int
                  ) -> tuple[list[Prompt], list[Prompt]]:
    """(validation, evaluation): disjoint, fixed by seed and ids, each in the input order."""
    if n_validation + (n_eval or 1) > len(prompts):
        raise PipelineError(f"prompts: asked for {n_validation} validation + {n_eval or 'at least 1'} evaluation "
                            f"prompts but the source has {len(prompts)}; lower n_validation / n_eval")
    ranked = sorted(range(len(prompts)), key=lambda i: split_key(seed, prompts[i].prompt_id))
    validation = set(ranked[:n_validation])
    rest = ranked[n_validation:]
    evaluation = set(rest if n_eval is None else rest[:n_eval])
    return ([p for i, p in enumerate(prompts) if i in validation],
            [p for i, p in enumerate(prompts) if i in evaluation])


def load_prompt_set(config: dict | PromptsConfig) -> PromptSet:
    config = parse_prompts_config(config)
    prompts = load_prompts(config)
    validation, evaluation = split_prompts(prompts, config.n_validation, config.n_eval, config.seed)
    source = config.path or f"{config.dataset}:{config.dataset_split}"
    return PromptSet(evaluation, validation, source,
                     {"n_total": len(prompts), "n_validation": len(validation), "n_eval": len(evaluation),
                      "seed": config.seed, "prompt_field": config.prompt_field})
