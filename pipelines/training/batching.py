"""The batch of a training step on this launch: stated per device (the default), or as one global batch.

With `per_device_batch_size` alone, a step takes per_device × accumulation × processes sequences, so the same
config on another process count is another experiment. With `global_batch_size`, the step's batch is fixed and
each process's share (global / processes) is cut into the largest micro-batch that divides it and does not
exceed `per_device_batch_size`, with gradient accumulation making up the rest.
"""
from __future__ import annotations

from ..config.training import Optimisation, PolicyTraining
from .errors import TrainingError


def micro_batches(share: int, cap: int) -> tuple[int, int]:
    """(micro-batch, accumulation steps): the largest divisor of `share` that is at most `cap`, and share / it."""
    size = max(d for d in range(1, min(share, cap) + 1) if share % d == 0)
    return size, share // size


def for_processes(settings: Optimisation, processes: int, where: str) -> Optimisation:
    """`settings` with per_device_batch_size and gradient_accumulation_steps as this launch runs them."""
    total = settings.global_batch_size
    if total is None:
        return settings
    if total % processes:
        raise TrainingError(f"{where}: global_batch_size {total} does not divide among {processes} processes; "
                            f"use a multiple of {processes} or launch a process count that divides {total}")
    size, steps = micro_batches(total // processes, settings.per_device_batch_size)
    resolved = settings.model_copy(update={"per_device_batch_size": size, "gradient_accumulation_steps": steps})
    if isinstance(resolved, PolicyTraining):
        try:  # PPO's rules on the batch it is split into, now that the batch is known
            resolved._ppo_batches()
        except ValueError as err:
            raise TrainingError(f"{where}: with global_batch_size {total} on {processes} processes, {err}") from None
    return resolved
