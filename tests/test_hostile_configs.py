"""Hostile run configs and prompt files, case by case: names and paths that would leave the run directory, and prompt
files with invalid UTF-8, empty prompts or non-text prompts. Each is refused by `merge_policies.py --check` with one
line naming the file and the field or line, and nothing is created (tests/hostile.py counts them)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

import hostile
import sweep_fixtures

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
from pipelines import merge_policies  # noqa: E402


@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_configs")
    return root, sweep_fixtures.build_sweep_inputs(root)


def valid_config(root: Path, paths: dict, tmp: Path) -> dict:
    data = yaml.safe_load(sweep_fixtures.sweep_config(root / "valid", paths).read_text())
    return {**data, "output_dir": str(tmp / "runs")}


def check(category: str, data: dict, tmp: Path, must_refuse: bool = True) -> str:
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    _, err = hostile.run_entry_point(category, lambda: merge_policies.main(["--config", str(config), "--check"]),
                                     output=tmp / "runs" / str(data.get("run_name", "")), must_refuse=must_refuse)
    return err


def test_the_valid_config_passes(sweep_inputs, tmp_path):
    root, paths = sweep_inputs
    assert check("paths", valid_config(root, paths, tmp_path), tmp_path, must_refuse=False) == ""


# -- names and paths that escape the run directory ------------------------------------------------------------------

ESCAPES = [
    ("run_name", "..", "run_name"),
    ("run_name", ".", "run_name"),
    ("run_name", "../elsewhere", "run_name"),
    ("run_name", "/tmp/absolute", "run_name"),
    ("run_name", "a/../../b", "run_name"),
    ("run_name", "", "run_name"),
    ("reward_name", "../../outside", "rewards.0"),
    ("reward_name", "..", "rewards.0"),
    ("reward_name", "/etc", "rewards.0"),
    ("reward_name", "a\\b", "rewards.0"),
    ("variant_name", "..", "sweep.variants.0.name"),
    ("variant_name", "../x", "sweep.variants.0.name"),
]


@pytest.mark.parametrize("field,value,where", ESCAPES, ids=[f"{f}={v!r}" for f, v, _ in ESCAPES])
def test_names_that_leave_the_run_directory_are_refused(sweep_inputs, tmp_path, field, value, where):
    root, paths = sweep_inputs
    data = valid_config(root, paths, tmp_path)
    if field == "run_name":
        data["run_name"] = value
    elif field == "reward_name":
        old = data["rewards"][0]["name"]
        data["rewards"][0]["name"] = value
        data["policies"][value] = data["policies"].pop(old)
    else:
        data["sweep"]["variants"][0]["name"] = value
    err = check("paths", data, tmp_path)
    assert where in err and "config.yaml" in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "elsewhere").exists()


def test_training_run_name_escape_is_refused(tmp_path):
    from pipelines.config.load import parse_config

    message = hostile.refused_by("paths", lambda: parse_config(
        {"run_name": "..", "base": {"path": "x"}, "rewards": [{"type": "length"}],
         "policies": [{"reward": "length"}]}, "train.yaml"))
    assert "run_name" in message and "train.yaml" in message


@pytest.mark.parametrize("where", ["run_dir", "inside"])
def test_symlinks_out_of_the_run_directory_are_refused(sweep_inputs, tmp_path, where):
    root, paths = sweep_inputs
    data = valid_config(root, paths, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "runs" / data["run_name"]
    if where == "run_dir":
        run_dir.parent.mkdir(parents=True)
        os.symlink(outside, run_dir)
        link = run_dir
    else:
        (run_dir / "sweep").mkdir(parents=True)
        link = run_dir / "sweep" / "samples"
        os.symlink(outside, link)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    _, err = hostile.run_entry_point("paths", lambda: merge_policies.main(["--config", str(config), "--check"]),
                                     must_refuse=True)
    assert f"{link} is a symlink to {outside}" in err, err
    assert list(outside.iterdir()) == []


def test_symlinks_inside_the_run_directory_are_fine(sweep_inputs, tmp_path):
    """A link that stays inside the run directory (and a runs/ directory that is itself a link) is no escape."""
    root, paths = sweep_inputs
    data = valid_config(root, paths, tmp_path)
    real_runs = tmp_path / "disk" / "runs"
    (real_runs / data["run_name"] / "sweep").mkdir(parents=True)
    os.symlink(real_runs, tmp_path / "runs")
    os.symlink(real_runs / data["run_name"] / "sweep", real_runs / data["run_name"] / "alias")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    outcome, _ = hostile.run_entry_point("paths", lambda: merge_policies.main(["--config", str(config), "--check"]))
    assert outcome == hostile.ACCEPTED


@pytest.mark.parametrize("fields,needle", [({"r": 0}, "r is 0"), ({"lora_alpha": -1}, "lora_alpha is -1"),
                                           ({"rank_pattern": {"q_proj": 2.5}}, "rank_pattern")])
def test_given_adapter_with_absurd_rank_is_refused_with_the_config(sweep_inputs, tmp_path, fields, needle):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root, paths = sweep_inputs
    adapter = tmp_path / "adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(paths["base"]),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    model.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **fields}))
    data = valid_config(root, paths, tmp_path)
    data["policies"]["long"] = str(adapter)
    err = check("adapter configs", data, tmp_path)
    assert "policies.long" in err and str(adapter / "adapter_config.json") in err and needle in err, err


# -- prompt files -----------------------------------------------------------------------------------------------------

def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


GOOD = [{"id": f"p{i}", "prompt": p} for i, p in enumerate(sweep_fixtures.PROMPTS)]

# (case, file suffix, content, the line the error must name, words it must have)
PROMPT_CASES = [
    ("invalid_utf8_jsonl", ".jsonl", jsonl(GOOD[:3]) + b'{"id": "x", "prompt": "caf\xe9"}\n' + jsonl(GOOD[3:]), 4,
     "not valid UTF-8"),
    ("invalid_utf8_csv", ".csv", b"id,prompt\n" + b"".join(f"{r['id']},{r['prompt']}\n".encode() for r in GOOD[:5])
     + b"p99,\xff\xfe\n", 7, "not valid UTF-8"),
    ("invalid_utf8_txt", ".txt", b"the food was\n\n\x80 our waiter\n", 3, "not valid UTF-8"),
    ("truncated_utf8", ".jsonl", jsonl(GOOD) + b'{"id": "z", "prompt": "\xe2\x82', 13, "not valid UTF-8"),
    ("empty_prompt_jsonl", ".jsonl", jsonl(GOOD[:5] + [{"id": "e", "prompt": ""}] + GOOD[5:]), 6, "is empty"),
    ("blank_prompt_after_blank_lines", ".jsonl", jsonl(GOOD[:2]) + b"\n\n" + jsonl([{"id": "e", "prompt": " \t "}])
     + jsonl(GOOD[2:]), 5, "is empty"),
    ("empty_prompt_csv", ".csv", ("id,prompt\n" + "".join(f"{r['id']},{r['prompt']}\n" for r in GOOD[:4])
                                  + "p77,\n" + "".join(f"{r['id']},{r['prompt']}\n" for r in GOOD[4:])).encode(),
     6, "is empty"),
    ("prompt_not_a_text", ".jsonl", jsonl(GOOD[:7] + [{"id": "n", "prompt": ["a", "list"]}] + GOOD[7:]), 8,
     "not a text"),
    ("unquoted_comma_csv", ".csv", ("id,prompt\n" + "".join(f"{r['id']},{r['prompt']}\n" for r in GOOD[:2])
                                    + "p55,the food, the wine\n" + "".join(f"{r['id']},{r['prompt']}\n"
                                                                          for r in GOOD[2:])).encode(),
     4, "more fields than the header"),
]


@pytest.mark.parametrize("case,suffix,content,line,needle", PROMPT_CASES, ids=[c[0] for c in PROMPT_CASES])
def test_bad_prompt_files_refused_with_file_and_line(sweep_inputs, tmp_path, case, suffix, content, line, needle):
    root, paths = sweep_inputs
    prompts = tmp_path / f"prompts{suffix}"
    prompts.write_bytes(content)
    data = valid_config(root, paths, tmp_path)
    data["prompts"] = {"path": str(prompts), "n_validation": 2, "n_eval": 4,
                       **({"prompt_field": "text"} if suffix == ".txt" else {"id_field": "id"})}
    err = check("prompt files", data, tmp_path)
    assert f"{prompts}:{line}" in err and needle in err, err


def test_the_same_prompt_files_without_their_defect_pass(sweep_inputs, tmp_path):
    """Each case above differs from an accepted file by its one defect."""
    root, paths = sweep_inputs
    for suffix, content in [(".jsonl", jsonl(GOOD)),
                            (".csv", ("id,prompt\n" + "".join(f"{r['id']},{r['prompt']}\n" for r in GOOD)).encode())]:
        prompts = tmp_path / f"prompts{suffix}"
        prompts.write_bytes(content)
        data = valid_config(root, paths, tmp_path)
        data["prompts"] = {"path": str(prompts), "n_validation": 2, "n_eval": 4, "id_field": "id"}
        assert check("prompt files", data, tmp_path, must_refuse=False) == ""
