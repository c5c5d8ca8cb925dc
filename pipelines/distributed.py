"""The little the stages need from accelerate's process state outside trainers.

Under `accelerate launch --num_processes N` every process runs the whole script. Trainers distribute
themselves; the stages' own work (sampling pairs, evaluating, sweep points) is either split across
processes (`run_sharded`, `Ranks.share`) or done by the main process while the others wait at `barrier`.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.state import AcceleratorState

from lines.atomic import write_json
from lines.ranks import failure_status, raise_failure, together

T = TypeVar("T")
R = TypeVar("R")


def process_state():

    # Without CUDA, accelerate sees the processes of a launch only when told to run on the CPU.
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes == 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under DeepSpeed on CPU accelerate leaves the process group to DeepSpeed, which creates it only when the
        # first trainer starts; until then every process would believe it is the only one. The stage needs
        # ranks and barriers before that (θ0's evaluation, DPO's pairs), so the group is created here.
        _init_process_group()
        PartialState._reset_state()
        state = PartialState(cpu=not torch.cuda.is_available())
    return state


def _init_process_group() -> None:
    if dist.is_initialized():
        return
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        import deepspeed  # deferred: deepspeed is optional
        from deepspeed.accelerator import get_accelerator  # deferred: deepspeed is optional

        _build_deepspeed_comm_op_one_rank_at_a_time()
        deepspeed.init_distributed(dist_backend=get_accelerator().communication_backend_name(),
                                   auto_mpi_discovery=False)
    else:
        dist.init_process_group(backend="gloo")


def _build_deepspeed_comm_op_one_rank_at_a_time() -> None:
    """DeepSpeed on CPU compiles its shared-memory comm op on first use (and again for a new install path).
    Every rank compiles it at once, and a rank can load the library while another is still writing it, which
    crashes that rank. Under an exclusive file lock the first rank builds and the others load the result."""
    from deepspeed.comm.torch import build_shm_op  # deferred: deepspeed is optional

    with open(Path(tempfile.gettempdir()) / "lines-soups-deepspeed-op-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build_shm_op()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def is_main_process() -> bool:
    return process_state().is_main_process


def barrier() -> None:
    process_state().wait_for_everyone()


def device():
    return process_state().device


class MainProcessFailed(RuntimeError):
    """Raised on the other processes when the main process failed in `on_main` (it raises its own error)."""


def on_main(fn: Callable[[], R], what: str) -> R:
    """fn() on the main process only; every process returns its (picklable) result, or raises when it failed.

    Work done by the main process alone (writing a shared file, a check, fitting statistics) would otherwise
    leave the other processes waiting at the next barrier forever when it raises. Here the outcome is broadcast
    instead: the main process re-raises its own error, the others raise the same one-line user error (or
    `MainProcessFailed` for a bug), so every process of the launch exits.
    """
    state = process_state()
    if state.num_processes == 1:
        return fn()
    outcome: list = [None]
    error: BaseException | None = None
    if state.is_main_process:
        try:
            outcome[0] = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others have been told
            error = exc
            outcome[0] = failure_status(exc)
    dist.broadcast_object_list(outcome, src=0)
    if error is not None:
        raise error
    status, value = outcome[0]
    if status != "ok":
        raise_failure(outcome[0], lambda message: MainProcessFailed(f"the main process failed while {what}: {message}"))
    return value


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
    # A process whose share fails stops the others instead of leaving them waiting for its file.
    together(lambda: write_json(shard_dir / f"{rank}.json", fn(list(items[bounds[rank]:bounds[rank + 1]])),
                                indent=None), f"computing its share of {tag}", rank, count)
    results: list = []
    for index in range(count):
        results.extend(json.loads((shard_dir / f"{index}.json").read_text()))
    state.wait_for_everyone()
    if state.is_main_process:
        shutil.rmtree(shard_dir, ignore_errors=True)
    return results


def describe() -> dict:
    """How this run is distributed, for manifests: backend type, process count, DeepSpeed ZeRO stage."""
    state = process_state()
    out = {"type": str(state.distributed_type).rsplit(".", 1)[-1], "processes": state.num_processes,
           "device": str(state.device)}
    try:
        plugin = AcceleratorState().deepspeed_plugin
    except Exception:  # the accelerator state exists only once a trainer has been built
        plugin = None
    if plugin is not None:
        out["zero_stage"] = plugin.zero_stage
    return out


class Ranks:
    """This process's rank, its share of a list of work items, and a barrier (one process without a launcher)."""

    def __init__(self):
        self.state = process_state()
        self.rank, self.world = self.state.process_index, self.state.num_processes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, items: list) -> list:
        return items[self.rank::self.world]

    def barrier(self) -> None:
        self.state.wait_for_everyone()

    def together(self, fn: Callable[[], R], what: str) -> R:
        """fn() on every process, then a barrier that an error on any one of them turns into an error on all
        (lines.ranks.together): a process never waits for ever for one that failed."""
        return together(fn, what, self.rank, self.world)
