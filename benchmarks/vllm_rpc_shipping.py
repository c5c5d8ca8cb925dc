"""The route this project does not take, kept for bench_vllm.py to measure: merged tensors built in the driver and
shipped to the engine's worker through `LLM.collective_rpc` as raw bytes (torch tensors do not survive vLLM's
multiprocess RPC), staged there, then loaded with the same in-place call the project uses."""
from __future__ import annotations

import torch

from pipelines.generation.vllm_worker import LinesWorkerExtension
from pipelines.generation.worker_merge import load_in_place

DTYPES = {str(d): d for d in (torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.bool)}


def to_wire(name: str, tensor: torch.Tensor) -> list:
    tensor = tensor.detach().contiguous().cpu()
    return [name, str(tensor.dtype), list(tensor.shape), tensor.view(-1).view(torch.uint8).numpy().tobytes()]


class ShippingWorker(LinesWorkerExtension):
    def bench_stage(self, chunk: list) -> int:
        staged = self.__dict__.setdefault("_bench_staged", [])
        for name, dtype, shape, data in chunk:
            raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            staged.append((name, raw.view(DTYPES[dtype]).reshape(shape)))
        return len(chunk)

    def bench_commit(self) -> int:
        staged = self.__dict__.pop("_bench_staged", [])
        with torch.no_grad():
            return load_in_place(self, iter(staged)).count
