"""`lines merge` under `accelerate launch` with two processes writes the bytes one process writes."""
from __future__ import annotations

import sys

import pytest
import yaml

import tiny
from launch_helpers import run, two_cpu_processes

pytestmark = pytest.mark.slow


def files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("method, parameters", [("task_arithmetic", {}), ("ties", {"density": 0.5})])
def test_two_processes_split_the_shards_and_write_the_one_process_bytes(tmp_path, method, parameters):
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, tmp_path / "base")
    tiny.tiny_tokenizer(tmp_path / "base")
    for i in range(2):
        tiny.save(tiny.perturbed_copy(base, seed=i + 1), tmp_path / f"p{i}")
    recipe = tmp_path / "recipe.yaml"
    # Small shards, so each process has several; α auto needs the full pass on every process.
    recipe.write_text(yaml.safe_dump({
        "base_model": str(tmp_path / "base"), "method": method, "parameters": parameters,
        "models": [{"model": str(tmp_path / "p0"), "weight": 0.3}, {"model": str(tmp_path / "p1"), "weight": 0.7}],
        "lines": {"alpha": "auto", "beta": 0.6}, "max_shard_size": "20KB"}))
    one = run([sys.executable, "-m", "lines.cli", "merge", str(recipe), str(tmp_path / "one"), "--quiet"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(two_cpu_processes(["-m", "lines.cli", "merge", str(recipe), str(tmp_path / "two"), "--quiet"]))
    assert two.returncode == 0, two.stderr[-3000:]
    shards = [name for name in files(tmp_path / "one") if name.endswith(".safetensors")]
    assert len(shards) >= 3  # both processes wrote some, one of them two
    assert files(tmp_path / "two") == files(tmp_path / "one")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def test_an_error_on_one_process_stops_both(tmp_path):
    """A damaged input is read by the process whose shard holds it: the other must not wait for it for ever."""
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, tmp_path / "base", max_shard_size="40KB")
    tiny.tiny_tokenizer(tmp_path / "base")
    for i in range(2):
        tiny.save(tiny.perturbed_copy(base, seed=i + 1), tmp_path / f"p{i}", max_shard_size="40KB")
    last = sorted((tmp_path / "p1").glob("*.safetensors"))[-1]
    data = bytearray(last.read_bytes())
    last.write_bytes(bytes(data[: len(data) - 64]))  # the last tensor's bytes cut short
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "base_model": str(tmp_path / "base"), "method": "task_arithmetic",
        "models": [{"model": str(tmp_path / "p0"), "weight": 0.5}, {"model": str(tmp_path / "p1"), "weight": 0.5}],
        "max_shard_size": "40KB"}))
    two = run(two_cpu_processes(["-m", "lines.cli", "merge", str(recipe), str(tmp_path / "out"), "--quiet"]),
              timeout=120)
    assert two.returncode != 0
    assert "error:" in two.stderr
    assert not (tmp_path / "out").exists()
