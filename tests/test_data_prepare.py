"""Data preparation from local copies of hh-rlhf and TL;DR in their own formats: the prompts expected by hand."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import pytest

from dataset_fixtures import tldr_prompt, write_hh_rlhf, write_tldr
from pipelines.data.__main__ import main
from pipelines.data.hh_rlhf import prepare_hh_rlhf, turns
from pipelines.data.tldr import prepare_tldr
from pipelines.prompts import load_prompts


@pytest.fixture(scope="module")
def hh_copy(tmp_path_factory):
    return write_hh_rlhf(tmp_path_factory.mktemp("hh-rlhf"))


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_hh_turns_are_read_as_the_dataset_writes_them():
    assert turns("\n\nHuman: Hi there\n\nAssistant: Hello.\n\nHuman: Bye\n\nAssistant: Bye!") == [
        ("Human", "Hi there"), ("Assistant", "Hello."), ("Human", "Bye"), ("Assistant", "Bye!")]
    assert turns("\n\nAssistant: Hello") is None and turns("no turns at all") is None


def test_hh_rlhf_gives_the_expected_prompts(hh_copy, tmp_path):
    prepared = prepare_hh_rlhf(str(hh_copy), held_out=1, seed=0, cache_dir=str(tmp_path / "cache"))
    train = prepared.files["train_prompts"]
    assert [(r["id"], r["prompt"]) for r in train] == [
        ("helpful-base/train/0", "What is a good soup for winter?"),
        ("helpful-base/train/1", "How do I bake bread?"),          # first Human turn of a multi-turn conversation
        ("harmless-base/train/0", "How can I pick a lock?")]       # the duplicate and the malformed row are gone
    # Test rows left: the soup prompt was trained on, the second tea row is a duplicate, the empty one malformed.
    left = {"helpful-base/test/1": "Which tea helps me sleep?", "harmless-base/test/0": "How do I hurt someone?",
            "harmless-base/test/1": "Is it ok to lie to my boss?"}
    held_id = min(left, key=lambda i: hashlib.sha256(f"0:{i}".encode()).hexdigest())
    assert [(r["id"], r["prompt"]) for r in prepared.files["eval_prompts"]] == [
        (i, p) for i, p in left.items() if i != held_id]
    [held] = prepared.files["held_out"]
    assert held["id"] == held_id and held["text"].startswith(f"Human: {left[held_id]}\n\nAssistant:")
    assert prepared.record["dropped"] == {"train_duplicates": 1, "test_duplicates": 1,
                                         "test_prompts_seen_in_training": 1, "malformed_or_filtered": 2}


def test_hh_rlhf_single_turn_keeps_only_one_exchange_conversations(hh_copy, tmp_path):
    prepared = prepare_hh_rlhf(str(hh_copy), held_out=0, turns_kept="single", cache_dir=str(tmp_path / "cache"))
    assert [r["prompt"] for r in prepared.files["train_prompts"]] == ["What is a good soup for winter?",
                                                                      "How can I pick a lock?"]
    assert [r["prompt"] for r in prepared.files["eval_prompts"]] == ["Which tea helps me sleep?",
                                                                     "Is it ok to lie to my boss?"]


def test_the_command_writes_files_the_configs_read(hh_copy, tmp_path):
    out = tmp_path / "data"
    code, stdout, stderr = run("prepare", "hh-rlhf", "--source", str(hh_copy), "--out", str(out), "--held-out", "1",
                               "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and not stderr
    assert sorted(p.name for p in out.iterdir()) == ["hh_eval_prompts.jsonl", "hh_held_out.jsonl", "hh_prepare.json",
                                                     "hh_train_prompts.jsonl"]
    assert "hh_train_prompts.jsonl: 3 rows" in stdout
    prompts = load_prompts({"path": str(out / "hh_eval_prompts.jsonl"), "prompt_field": "prompt", "id_field": "id"})
    assert len(prompts) == 2 and prompts[0].prompt_id.startswith(("helpful-base/test/", "harmless-base/test/"))
    record = json.loads((out / "hh_prepare.json").read_text())
    assert record["rows"] == {"train_prompts": 3, "eval_prompts": 2, "held_out": 1}
    assert "first Human turn" in record["rules"]["prompt"] and record["subsets"] == ["helpful-base", "harmless-base"]


def test_existing_files_are_kept_unless_forced(hh_copy, tmp_path):
    out = tmp_path / "data"
    args = ["prepare", "hh-rlhf", "--source", str(hh_copy), "--out", str(out), "--held-out", "1",
            "--cache-dir", str(tmp_path / "cache")]
    assert run(*args)[0] == 0
    (out / "hh_train_prompts.jsonl").write_text("mine\n")
    code, _, stderr = run(*args)
    assert code == 2 and stderr.strip().splitlines() == [
        f"error: '{out / 'hh_train_prompts.jsonl'}' already exists; remove it or pass --force to replace the "
        "prepared files"]
    assert (out / "hh_train_prompts.jsonl").read_text() == "mine\n"
    assert run(*args, "--force")[0] == 0 and len(read(out / "hh_train_prompts.jsonl")) == 3


@pytest.mark.parametrize("extra, fragment", [
    (["--source", "/no/such/copy"], "error: --source '/no/such/copy' is not a directory"),
    (["--held-out", "50"], "error: hh-rlhf test rows left for evaluation and held-out texts: 3 rows, at least 51 "
                           "needed; lower --held-out or add subsets"),
    (["--subsets", "helpful-online"], "has no 'helpful-online' directory"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(hh_copy, tmp_path, extra, fragment):
    out = tmp_path / "data"
    args = ["prepare", "hh-rlhf", "--source", str(hh_copy), "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    code, stdout, stderr = run(*args, *extra)
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and fragment in lines[0], stderr
    assert not out.exists()


def test_tldr_gives_the_expected_prompts_and_posts(tmp_path):
    source = write_tldr(tmp_path / "tldr")
    prepared = prepare_tldr(str(source), held_out=2, cache_dir=str(tmp_path / "cache"))
    soup = tldr_prompt("cooking", "Soup went wrong", "I burnt the onions and the soup tasted bitter.")
    assert [(r["id"], r["prompt"], r["reference"]) for r in prepared.files["train_prompts"]] == [
        ("train/0", soup, "burnt onions ruined soup")]
    assert [r["id"] for r in prepared.files["eval_prompts"]] == ["test/1"]  # test/0 trained on, test/2 malformed
    assert sorted(r["text"] for r in prepared.files["held_out"]) == [
        "I have not finished a book in months.", "I ran my first 10k today and it felt great."]
    assert prepared.record["dropped"]["malformed"] == 1
