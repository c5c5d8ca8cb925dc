"""Prompt sets: file formats, field mapping, one-line errors, a seeded disjoint split."""
from __future__ import annotations

import csv
import json
import random

import pytest

from pipelines.errors import PipelineError
from pipelines.prompts import Prompt, load_prompt_set, load_prompts, split_key, split_prompts

QUESTIONS = [f"question number {i}?" for i in range(20)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def jsonl(tmp_path):
    return write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "question": q} for i, q in enumerate(QUESTIONS)])


def test_jsonl_with_field_mapping(jsonl):
    prompts = load_prompts({"path": str(jsonl), "prompt_field": "question", "id_field": "id"})
    assert prompts[:2] == [Prompt("q0", QUESTIONS[0]), Prompt("q1", QUESTIONS[1])] and len(prompts) == 20
    assert [p.prompt_id for p in load_prompts({"path": str(jsonl), "prompt_field": "question", "limit": 3})] == \
        ["0", "1", "2"]


def test_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with (tmp_path / "p.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["text", "other"])
        writer.writeheader()
        writer.writerows([{"text": q, "other": 1} for q in QUESTIONS[:3]])
    pq.write_table(pa.table({"prompt": QUESTIONS[:4]}), tmp_path / "p.parquet")
    assert [p.prompt for p in load_prompts({"path": str(tmp_path / "p.csv"), "prompt_field": "text"})] == QUESTIONS[:3]
    assert [p.prompt for p in load_prompts({"path": str(tmp_path / "p.parquet")})] == QUESTIONS[:4]


def test_missing_field_is_one_line_naming_file_and_field(jsonl):
    with pytest.raises(PipelineError) as info:
        load_prompts({"path": str(jsonl), "prompt_field": "prompt"})
    message = str(info.value)
    assert str(jsonl) in message and "no field 'prompt'" in message and "question" in message
    assert "\n" not in message


@pytest.mark.parametrize("config, fragment", [
    ({"path": "/no/such/file.jsonl"}, "does not exist"),
    ({}, "exactly one of `path`"),
    ({"path": "a.jsonl", "dataset": "x"}, "exactly one of `path`"),
    ({"path": "a.jsonl", "prompt_feild": "q"}, "field 'prompt_feild' is not a prompts setting"),
])
def test_bad_config_is_one_line(config, fragment):
    with pytest.raises(PipelineError, match=fragment) as info:
        load_prompts(config)
    assert "\n" not in str(info.value)


def test_unsupported_extension_and_bad_json(tmp_path):
    (tmp_path / "p.xml").write_text("<a/>")
    with pytest.raises(PipelineError, match="unsupported extension"):
        load_prompts({"path": str(tmp_path / "p.xml")})
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(PipelineError, match="line 2 is not valid JSON"):
        load_prompts({"path": str(tmp_path / "bad.jsonl")})


def test_duplicate_ids_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(PipelineError, match="id 'a' twice"):
        load_prompts({"path": str(path), "id_field": "id"})


def test_split_is_deterministic_disjoint_and_order_free(jsonl, tmp_path):
    config = {"path": str(jsonl), "prompt_field": "question", "id_field": "id", "n_validation": 5, "n_eval": 8,
              "seed": 3}
    first, second = load_prompt_set(config), load_prompt_set(config)
    assert first.validation == second.validation and first.evaluation == second.evaluation
    assert len(first.validation) == 5 and len(first.evaluation) == 8
    assert not {p.prompt_id for p in first.validation} & {p.prompt_id for p in first.evaluation}
    # Independent reference: rank ids by sha256("3:<id>").
    ranked = sorted((f"q{i}" for i in range(20)), key=lambda i: split_key(3, i))
    assert {p.prompt_id for p in first.validation} == set(ranked[:5])
    assert {p.prompt_id for p in first.evaluation} == set(ranked[5:13])
    # Same membership when the file's rows are shuffled; each part keeps file order.
    rows = [{"id": f"q{i}", "question": q} for i, q in enumerate(QUESTIONS)]
    random.Random(0).shuffle(rows)
    shuffled = load_prompt_set({**config, "path": str(write_jsonl(tmp_path / "s.jsonl", rows))})
    assert set(shuffled.validation) == set(first.validation) and set(shuffled.evaluation) == set(first.evaluation)
    assert [p.prompt_id for p in first.evaluation] == sorted((p.prompt_id for p in first.evaluation),
                                                             key=lambda i: int(i[1:]))
    other = load_prompt_set({**config, "seed": 4})
    assert set(other.validation) != set(first.validation)


def test_split_defaults_and_limits():
    prompts = [Prompt(str(i), f"p{i}") for i in range(10)]
    validation, evaluation = split_prompts(prompts, 3, None, 0)
    assert len(validation) == 3 and len(evaluation) == 7 and set(validation) | set(evaluation) == set(prompts)
    with pytest.raises(PipelineError, match="asked for 8 validation \\+ 5 evaluation"):
        split_prompts(prompts, 8, 5, 0)


def test_dataset_without_hub_is_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(PipelineError, match="cannot load dataset 'no-such-org/no-such-set'") as info:
        load_prompts({"dataset": "no-such-org/no-such-set", "prompt_field": "q"})
    assert "\n" not in str(info.value)
