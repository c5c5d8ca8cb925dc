"""One vLLM engine per GPU (or per tensor-parallel group of GPUs) under `accelerate launch`.

Every process of a launch runs the whole job. vLLM places an engine on the first device its process sees, so
without isolation every rank's engine lands on GPU 0. vLLM's default mode runs the engine in a process it spawns:
this process's `CUDA_VISIBLE_DEVICES` is narrowed to the rank's own GPUs while the engine is created, so the
engine's process sees only them from its start (before CUDA starts there), and restored afterwards — training and
the metric models of this process keep the devices accelerate gave them. Local rank r with tensor parallelism t
gets GPUs r·t … r·t + t − 1 of those visible; the metric models (θ0 for KL, perplexity) go on the first of them.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from ..errors import PipelineError


def local_process() -> tuple[int, int]:
    """(local rank, processes on this node) as the launcher set them; (0, 1) without a launcher."""
    return int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (or their indices)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [item.strip() for item in listed.split(",") if item.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]  # NVML: does not start CUDA here


def engine_gpus(tensor_parallel_size: int) -> list[str]:
    rank, local_world = local_process()
    gpus = visible_gpus()
    need = local_world * tensor_parallel_size
    if len(gpus) < need:
        raise PipelineError(f"vllm: {local_world} process(es) on this node × tensor_parallel_size "
                            f"{tensor_parallel_size} need {need} GPUs, and {len(gpus)} are visible; launch fewer "
                            "processes (accelerate launch --num_processes) or lower generation.vllm.tensor_parallel_size")
    return gpus[rank * tensor_parallel_size:(rank + 1) * tensor_parallel_size]


def in_process_engine() -> bool:
    return os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "0"


def check_engine_devices(tensor_parallel_size: int) -> None:
    """What isolation needs, checked before any work: enough GPUs, and an engine in its own process when several
    processes share a node (an engine inside this process would find CUDA already started on another device)."""
    engine_gpus(tensor_parallel_size)
    if in_process_engine() and local_process()[1] > 1:
        raise PipelineError("vllm: VLLM_ENABLE_V1_MULTIPROCESSING=0 runs the engine inside each process, where it "
                            "cannot be isolated to the rank's GPU; unset it under a multi-process launch")


@contextlib.contextmanager
def isolated_for_engine(tensor_parallel_size: int, on_gpu: bool) -> Iterator[list[str]]:
    """While the engine is created, this process sees only the rank's GPUs (the engine's process inherits that)."""
    if not on_gpu:
        yield []
        return
    gpus = engine_gpus(tensor_parallel_size)
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    try:
        yield gpus
    finally:
        if previous is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = previous


def metric_device(device: str, tensor_parallel_size: int) -> str:
    """Where the metric models go beside this rank's engine: `auto` is the engine's first GPU."""
    if device != "auto" or not torch.cuda.device_count():
        return device
    rank, _ = local_process()
    return f"cuda:{(rank * tensor_parallel_size) % torch.cuda.device_count()}"
