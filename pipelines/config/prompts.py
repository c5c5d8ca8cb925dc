"""Where prompts come from: the main job's `prompts:` section (the demo's held-out prompts, or a file / `datasets`
name split into validation and evaluation prompts; pipelines/prompts.py reads them) and the training stage's
`prompts:` (training prompts and held-out prompts; pipelines/training/prompt_sources.py reads them).

    prompts:
      path: data/prompts.jsonl      # or  dataset: Anthropic/hh-rlhf, dataset_split: test
      prompt_field: question        # the column holding the prompt text (default: prompt)
      id_field: id                  # optional; default: the row's position in the file
      limit: 500                    # optional: read only the first rows
      n_validation: 50              # prompts held out to tune LiNeS' beta / uniform controls
      n_eval: 200                   # evaluation prompts (default: all the others)
      seed: 0
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PlainSerializer, PlainValidator, ValidationError, model_validator

from lines.schema import StrictModel
from lines.config_errors import describe_validation_error

from ..errors import PipelineError


class PromptsConfig(StrictModel):
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


class DemoPromptsConfig(StrictModel):
    """The embedded demo's held-out prompts (pipelines/demo/data.py), disjoint from its training prompts."""

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


def parse_prompts_config(config: dict | PromptsConfig) -> PromptsConfig:
    if isinstance(config, PromptsConfig):
        return config
    try:
        return PromptsConfig.model_validate(config)
    except ValidationError as err:
        raise PipelineError(describe_validation_error(err, "prompts", setting="prompts setting")) from None


class PromptSource(StrictModel):
    """Training prompts and held-out prompts (the manifest's before/after numbers come from the latter)."""

    source: Literal["demo", "file"] = "demo"
    n_train: int | None = Field(None, ge=1)  # None: all training prompts
    n_eval: int = Field(64, ge=2)
    seed: int = 0
    path: str | None = None
    prompt_field: str = "prompt"
    id_field: str | None = None

    @model_validator(mode="after")
    def _file(self):
        if self.source == "file" and not self.path:
            raise ValueError("prompts.source is 'file' but prompts.path is not set")
        return self
