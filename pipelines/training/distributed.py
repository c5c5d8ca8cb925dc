"""The little the stage needs from accelerate's process state outside trainers.

Under `accelerate launch --num_processes N` every process runs the whole script. Trainers distribute
themselves; the stage's own work (sampling pairs, evaluating, writing manifests) is either split across
processes with `run_sharded` or done by the main process while the others wait at `barrier`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def process_state():
    from accelerate import PartialState

    return PartialState()


def is_main_process() -> bool:
    return process_state().is_main_process


def barrier() -> None:
    process_state().wait_for_everyone()


def device():
    return process_state().device


def run_sharded(items: Sequence[T], fn: Callable[[list[T]], list[R]], workdir: Path, tag: str) -> list[R]:
    """fn over `items`, split across processes; every process gets the full result list, in input order.

    Each process writes its part as JSON under `workdir` (a plain file exchange: no collective on
    arbitrary Python objects, and it works the same on gloo and NCCL). Results must be JSON-serialisable.
    """
    state = process_state()
    if state.num_processes == 1:
        return fn(list(items))
    count, rank = state.num_processes, state.process_index
    # Contiguous shards, like accelerate's split_between_processes, so concatenation restores the order.
    bounds = [len(items) * i // count for i in range(count + 1)]
    shard_dir = Path(workdir) / f".shards-{tag}"
    if state.is_main_process:
        shutil.rmtree(shard_dir, ignore_errors=True)
        shard_dir.mkdir(parents=True)
    state.wait_for_everyone()
    part = fn(list(items[bounds[rank]:bounds[rank + 1]]))
    (shard_dir / f"{rank}.json.tmp").write_text(json.dumps(part))
    (shard_dir / f"{rank}.json.tmp").rename(shard_dir / f"{rank}.json")
    state.wait_for_everyone()
    results: list = []
    for index in range(count):
        results.extend(json.loads((shard_dir / f"{index}.json").read_text()))
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(shard_dir, ignore_errors=True)
    return results
