"""The processes of a launch (`accelerate launch`, `torchrun`) as the merge engine sees them, with torch alone.

The engine does not depend on accelerate: a launcher's environment (RANK, WORLD_SIZE, MASTER_ADDR/PORT) is enough
to join the process group on gloo, which exchanges small Python objects between CPU processes. One process without
a launcher is rank 0 of 1 and never touches torch.distributed.
"""
from __future__ import annotations

import os
from typing import Callable, TypeVar

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
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="gloo")
                self._owns_group = True

    def __enter__(self) -> "LaunchRanks":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(wait=exc_type is None)

    def close(self, wait: bool = True) -> None:
        """Leave the process group this object joined. A process that exits still holding it can abort in gloo's
        teardown ("terminate called without an active exception") while another rank is still talking to it, so
        every rank first waits for the others (`wait`; skipped after an error, when a rank may be gone)."""
        if not self._owns_group:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            if wait:
                dist.barrier()
            dist.destroy_process_group()
        self._owns_group = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: T) -> T:
        """Rank 0's `value` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

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
    import torch.distributed as dist

    error, result, status = None, None, None
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others have been told
        error = exc
        status = ("user", str(exc)) if isinstance(exc, UserError) else ("bug", f"{type(exc).__name__}: {exc}")
    statuses: list = [None] * world
    dist.all_gather_object(statuses, status)
    if error is not None:
        raise error
    failed = next(((index, s) for index, s in enumerate(statuses) if s is not None), None)
    if failed is not None:
        index, (kind, message) = failed
        if kind == "user":
            raise UserError(message)
        raise RankFailed(f"process {index} failed while {what}: {message}")
    return result
