"""Code that runs inside vLLM's worker processes (named by the engine argument `worker_extension_cls`).

vLLM mixes this class into each worker, so `self` is the worker (`self.model_runner`, `self.device`,
`self.reload_weights`), and `LLM.collective_rpc("lines_load_merge", args=(message,))` runs the method on every
worker. The message is a merge *specification* (worker_merge.merge_message): each worker builds the merged
tensors itself and loads them in place; with tensor parallelism every worker builds whole tensors one at a time
and its model's weight loaders keep the shard that worker holds. Keep this module's imports light (torch and
`lines`): every worker imports it at start-up.
"""
from __future__ import annotations

import logging
import time

import torch

from .worker_merge import WorkerMerges, load_in_place


class LinesWorkerExtension:
    def lines_load_merge(self, message: dict) -> dict:
        """Build the merge the message specifies and write it into this worker's model, in place."""
        merges = self.__dict__.get("_lines_merges")
        if merges is None:
            merges = self._lines_merges = WorkerMerges(_worker_device(self))
            # Every reload warns that the rotary embedding (no weights) and a tied LM head (its weight is the
            # embedding's; worker_merge.refresh_tied_layers re-derives it) "failed to load": expected, once per point.
            logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").setLevel(logging.ERROR)
        start = time.perf_counter()
        with torch.no_grad():
            loaded = load_in_place(self, merges.merged_tensors(message))
        return {"key": message["key"], "tensors": loaded.count, "seconds": time.perf_counter() - start,
                "merge_seconds": loaded.produce_seconds, "rank": int(getattr(self, "rank", 0))}

    def lines_weights_checksum(self) -> list[float]:
        """[Σ_k Σ|w_k|, Σ_k k·Σ w_k] over this worker's parameters w_1, w_2, … in float64: equal before a swap and
        after its restore, different in between. (On the CPU build packed linear weights live outside the
        parameters; there the outputs are the check.)"""
        total, weighted = 0.0, 0.0
        with torch.no_grad():
            for index, parameter in enumerate(self.model_runner.model.parameters()):
                if parameter.numel():
                    values = parameter.detach().double()
                    total += float(values.abs().sum())
                    weighted += float(values.sum()) * (index + 1)
        return [total, weighted]

    def lines_close(self) -> None:
        merges = self.__dict__.pop("_lines_merges", None)
        if merges is not None:
            merges.close()


def _worker_device(worker) -> torch.device:
    device = getattr(worker, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")
