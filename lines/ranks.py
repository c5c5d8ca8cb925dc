"""The processes of a launch (`accelerate launch`, `torchrun`) as the merge engine sees them, with torch alone.

The engine does not depend on accelerate: a launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT) is enough
to join the process group on gloo, which exchanges small Python objects between CPU processes. One process without
a launcher is rank 0 of 1 and never touches torch.distributed.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar

import torch.distributed as dist

from .errors import UserError

T = TypeVar("T")


class RankFailed(RuntimeError):
    """Raised on the other processes when one failed with a bug (a user error is re-raised as one everywhere)."""


class LaunchRanks:
    """This process's rank among the launch's (`alone=True`: one process, whatever the environment says)."""

    def __init__(self, alone: bool = False):
        self.world = 1 if alone else int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = 0 if alone else int(os.environ.get("RANK", "0"))
        self._owns_group = False
        if self.world > 1:
            if not dist.is_initialized():
                dist.init_process_group(backend="gloo")
                self._owns_group = True

    def __enter__(self) -> "LaunchRanks":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(wait=exc_type is None)

    def close(self, wait: bool = True) -> None:
        """Leave the process group this object joined (`leave_process_group`)."""
        if self._owns_group:
            leave_process_group(wait)
            self._owns_group = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def together(self, fn: Callable[[], T], what: str) -> T:
        return together(fn, what, self.rank, self.world)

    def shards_of_mine(self, count: int) -> set[int]:
        """The output shards this rank writes, round robin (equal shards, so equal work where they are equal)."""
        return {index for index in range(count) if index % self.world == self.rank}


def together(fn: Callable[[], T], what: str, rank: int, world: int) -> T:
    """fn() on every rank of the default process group, then every rank learns whether any failed and, if one did,
    raises: a rank's error would otherwise leave the others waiting at the next collective for ever. The failing
    rank raises its own error; the others raise the same one-line user error, or `RankFailed` for a bug."""
    if world == 1:
        return fn()
    error, result, status = None, None, None
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others have been told
        error = exc
        status = failure_status(exc)
    statuses: list = [None] * world
    dist.all_gather_object(statuses, status)
    if error is not None:
        raise error
    failed = next(((index, s) for index, s in enumerate(statuses) if s is not None), None)
    if failed is not None:
        index, failure = failed
        raise_failure(failure, lambda message: RankFailed(f"process {index} failed while {what}: {message}"))
    return result


def failure_status(exc: BaseException) -> tuple[str, str]:
    """How a process's error travels to the others: ("user", its one line) or ("bug", type and message)."""
    if isinstance(exc, UserError):
        return "user", str(exc)
    return "bug", f"{type(exc).__name__}: {exc}"


def raise_failure(failure: tuple[str, str], bug: Callable[[str], Exception]) -> None:
    """On a process that did not fail itself: the same one-line user error, or `bug(message)` for a bug."""
    kind, message = failure
    if kind == "user":
        raise UserError(message)
    raise bug(message)


def leave_process_group(wait: bool) -> None:
    """End of a launched process: leave the default process group, if one was made. A process that exits still
    holding a gloo group can abort in its teardown ("terminate called without an active exception") while another
    rank is still talking to it, so on success every rank first waits for the others (`wait`; skipped after an
    error, when a rank may be gone). One process without a launcher has no group: nothing to do."""
    if not dist.is_available() or not dist.is_initialized():
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()
