"""The config package's shared pieces: one deep merge that leaves its inputs alone, one set of sampling bounds."""
from __future__ import annotations

import copy
import typing

import pytest
from pydantic import ValidationError

from pipelines.config.generation import GenerationConfig
from pipelines.config.overrides import deep_merge
from pipelines.config.sampling import SAMPLING_FIELDS
from pipelines.config.training import DPOSpec, EvaluationSpec, RLSpec

SAMPLING_SECTIONS = (GenerationConfig, DPOSpec, RLSpec, EvaluationSpec)
# Sections where one sample per prompt is enough, so greedy decoding is allowed.
SINGLE_SAMPLE = (GenerationConfig, EvaluationSpec)


def test_deep_merge_leaves_its_inputs_unchanged_and_shares_nothing_with_them():
    base = {"training": {"dpo": {"rounds": 1, "loss_type": ["sigmoid"]}, "max_steps": 5}, "keep": [1, 2]}
    update = {"training": {"dpo": {"rounds": 2}, "lora": {"r": 4}}, "keep": [3]}
    base_before, update_before = copy.deepcopy(base), copy.deepcopy(update)
    merged = deep_merge(base, update)
    assert merged == {"training": {"dpo": {"rounds": 2, "loss_type": ["sigmoid"]}, "max_steps": 5, "lora": {"r": 4}},
                      "keep": [3]}
    assert base == base_before and update == update_before
    merged["training"]["dpo"]["loss_type"].append("sft")
    merged["training"]["lora"]["r"] = 8
    assert base == base_before and update == update_before


@pytest.mark.parametrize("name", sorted(SAMPLING_FIELDS))
def test_every_sampling_section_takes_the_one_declaration_of_a_field(name):
    declared = typing.get_args(SAMPLING_FIELDS[name])[1].metadata
    for section in SAMPLING_SECTIONS:
        bounds = section.model_fields[name].metadata
        assert len(bounds) == len(declared) and all(a is b for a, b in zip(bounds, declared)), section.__name__


@pytest.mark.parametrize("section", SAMPLING_SECTIONS, ids=lambda s: s.__name__)
def test_the_sampling_bounds_refuse_the_same_values_everywhere(section):
    for field, value in (("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("max_new_tokens", 0)):
        with pytest.raises(ValidationError):
            section.model_validate({field: value})
    for field, value in (("temperature", 0.0 if section in SINGLE_SAMPLE else 0.1), ("top_p", 1.0),
                         ("max_new_tokens", 1)):
        assert getattr(section.model_validate({field: value}), field) == value


@pytest.mark.parametrize("section", [DPOSpec, RLSpec], ids=lambda s: s.__name__)
def test_sections_that_compare_samples_of_a_prompt_refuse_greedy_decoding(section):
    with pytest.raises(ValidationError, match="temperature 0 \\(greedy\\) makes them identical"):
        section.model_validate({"temperature": 0.0})
