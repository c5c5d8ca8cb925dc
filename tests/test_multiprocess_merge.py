"""`lines merge` under `accelerate launch` with two processes writes the bytes one process writes."""
from __future__ import annotations

import sys
import textwrap

import pytest

import tiny
from launch_helpers import run, two_cpu_processes

pytestmark = pytest.mark.slow


def files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_two_processes_split_the_shards_and_write_the_one_process_bytes(tmp_path):
    # TIES: whole tensors per block, and α auto needs a full pass over the inputs on every process. Small shards,
    # so each process has several.
    recipe = tiny.ties_recipe_on_two_policies(tmp_path, "20KB")
    one = run([sys.executable, "-m", "lines.cli", "merge", str(recipe), str(tmp_path / "one"), "--quiet"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(two_cpu_processes(["-m", "lines.cli", "merge", str(recipe), str(tmp_path / "two"), "--quiet"]))
    assert two.returncode == 0, two.stderr[-3000:]
    shards = [name for name in files(tmp_path / "one") if name.endswith(".safetensors")]
    assert len(shards) >= 3  # both processes wrote some, one of them two
    assert files(tmp_path / "two") == files(tmp_path / "one")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


TOGETHER_SCRIPT = textwrap.dedent('''
    import sys
    from lines.errors import LinesError, UserError, report_user_error
    from lines.ranks import LaunchRanks

    ranks = LaunchRanks()
    assert ranks.world == 2
    print(f"rank {ranks.rank} got {ranks.broadcast(f'from rank {ranks.rank}')}", flush=True)

    def my_shards():
        if ranks.rank == 1:  # a damaged input that only this process's shards read
            raise LinesError("p1/model-00002-of-00002.safetensors: tensor 'x' runs past the end of the file")
        return "done"

    try:
        ranks.together(my_shards, "writing its shards")
    except UserError as exc:
        print(f"rank {ranks.rank} stopped: {type(exc).__name__}", flush=True)
        sys.exit(report_user_error(exc))
''')


def test_an_error_on_one_process_stops_both(tmp_path):
    """The process that did not fail must not wait for the one that did: both stop with its one-line error."""
    script = tmp_path / "together.py"
    script.write_text(TOGETHER_SCRIPT)
    result = run(two_cpu_processes([str(script)]), timeout=120)
    assert result.returncode != 0
    assert "rank 0 got from rank 0" in result.stdout and "rank 1 got from rank 0" in result.stdout
    assert "rank 1 stopped: LinesError" in result.stdout and "rank 0 stopped: UserError" in result.stdout
    assert result.stderr.count("error: p1/model-00002-of-00002.safetensors: tensor 'x' runs past the end") == 2
