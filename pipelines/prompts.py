"""Prompt sets: rows from a local JSONL/JSON/CSV/Parquet file or a `datasets` name, with a field mapping,
split into a fixed validation part and a fixed evaluation part.

    prompts:
      path: data/prompts.jsonl      # or  dataset: Anthropic/hh-rlhf, dataset_split: test
      prompt_field: question        # the column holding the prompt text (default: prompt)
      id_field: id                  # optional; default: the row's position in the file
      limit: 500                    # optional: read only the first rows
      n_validation: 50              # prompts held out to tune LiNeS' beta / uniform controls
      n_eval: 200                   # evaluation prompts (default: all the others)
      seed: 0

The split is deterministic and disjoint: prompts are ordered by sha256("<seed>:<prompt_id>"), the first
`n_validation` go to validation and the next `n_eval` to evaluation; each part keeps file order. With an
`id_field`, which prompt lands where does not depend on the order of rows in the file.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Annotated, Literal, Union

from pydantic import (BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError,
                      model_validator)

from lines.config_errors import describe_validation_error
from lines.errors import first_line
from reward_models.records import column, read_located_records

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


class PromptsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["file", "dataset"] | None = None  # optional: which of `path` / `dataset` says it
    path: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_split: str = "train"
    prompt_field: str = "prompt"
    id_field: str | None = None
    limit: int | None = Field(None, gt=0)
    n_validation: int = Field(0, ge=0)
    n_eval: int | None = Field(None, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of `path` (a local file) or `dataset` (a datasets name), or "
                             "source: demo for the demo's prompts")
        if self.source is not None and (self.source == "file") != (self.path is not None):
            raise ValueError(f"source is {self.source} but {'path' if self.source == 'file' else 'dataset'} is "
                             "not set")
        return self


class DemoPromptsConfig(BaseModel):
    """The embedded demo's held-out prompts (pipelines/demo/data.py), disjoint from its training prompts."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["demo"]
    n_validation: int = Field(32, ge=0)
    n_eval: int = Field(128, ge=1)
    seed: int = 0


def _validate_prompts_section(value) -> DemoPromptsConfig | PromptsConfig:
    if isinstance(value, (DemoPromptsConfig, PromptsConfig)):
        return value
    if not isinstance(value, dict):
        raise ValueError("prompts is a mapping like {source: demo} or {path: prompts.jsonl, prompt_field: prompt}")
    return (DemoPromptsConfig if value.get("source") == "demo" else PromptsConfig).model_validate(value)


# The main job's `prompts:` section: the demo's prompts, or a prompt file / dataset (errors keep their fields).
PromptsSection = Annotated[Union[DemoPromptsConfig, PromptsConfig], PlainValidator(_validate_prompts_section),
                           PlainSerializer(lambda config: config.model_dump(mode="json"), return_type=dict)]


def prompt_split(config: PromptsConfig | DemoPromptsConfig) -> dict[str, list[Prompt]]:
    """{"validation": prompts to choose β / λ on, "evaluation": prompts the fronts are measured on}: disjoint
    and fixed by seed."""
    if isinstance(config, DemoPromptsConfig):
        return {VALIDATION: demo_prompts("validation", config.n_validation, config.seed),
                EVALUATION: demo_prompts("test", config.n_eval, config.seed)}
    prompt_set = load_prompt_set(config)
    return {VALIDATION: prompt_set.validation, EVALUATION: prompt_set.evaluation}


def parse_prompts_config(config: dict | PromptsConfig) -> PromptsConfig:
    if isinstance(config, PromptsConfig):
        return config
    try:
        return PromptsConfig.model_validate(config)
    except ValidationError as err:
        raise PipelineError(describe_validation_error(err, "prompts", setting="prompts setting")) from None


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
