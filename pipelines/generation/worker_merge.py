"""A sweep point's merged weights, built inside a serving engine's worker from the merge *specification*.

The driver sends a small control message (θ0 and policy paths, the merge spec, its key, where the inputs are
held); each worker computes the merged tensors with `lines` where its model lives and loads them in place. No
tensor data crosses the engine's RPC channel (vLLM's multiprocess RPC loses torch tensors; and shipping a full
8B merge per point per rank would cost more than generating).

Where the merge inputs are held (`source`):
- disk:   read from the checkpoints for every point (the OS page cache keeps them hot); merged on the CPU;
- host:   every input tensor kept in host memory after its first read (pinned on a GPU machine) and merged on
          the worker's device, each tensor copied in as it is needed;
- device: every input tensor kept on the worker's device (θ0 and all policies); merges are device arithmetic.

Imports stay light (torch and `lines` only): every engine worker process imports this module at start-up.
"""
from __future__ import annotations

import time
from typing import Iterator

import torch

from lines import MergeInputs, MergeSpec, iter_merged_tensors
from lines.engine import WHOLE_TENSORS

SOURCES = ("disk", "host", "device")


def merge_message(base: str, policies: list[str], spec: MergeSpec, key: str, source: str) -> dict:
    """The control message for one dense point: plain strings, numbers and lists (msgpack- and JSON-safe)."""
    if source not in SOURCES:
        raise ValueError(f"merge source {source!r} is not one of {', '.join(SOURCES)}")
    return {"base": str(base), "policies": [str(p) for p in policies], "spec": spec.model_dump(mode="json"),
            "key": key, "source": source}


class ResidentInputs(MergeInputs):
    """Merge inputs whose tensors stay in memory after their first read: on `store` (the host, pinned when
    `pin`; or the device), handed to the merge on `compute` (copied there per tensor when they differ)."""

    def __init__(self, base: str, policies: list[str], store: torch.device, compute: torch.device, pin: bool):
        super().__init__(base, policies)
        self.store, self.compute, self.pin = store, compute, pin
        self._held: dict[str, list[torch.Tensor]] = {}

    def read_block(self, name: str, rows: tuple[int, int] | None = None) -> list[torch.Tensor]:
        held = self._held.get(name)
        if held is None:
            held = [self._keep(tensor) for tensor in super().read_block(name)]
            self._held[name] = held
        if rows is not None:
            held = [tensor[rows[0]:rows[1]] for tensor in held]
        if self.store == self.compute:
            return held
        return [tensor.to(self.compute, non_blocking=self.pin) for tensor in held]

    def _keep(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.store.type != "cpu":
            return tensor.to(self.store)
        return tensor.pin_memory() if self.pin else tensor

    def close(self) -> None:
        self._held.clear()
        super().close()


class WorkerMerges:
    """The merge inputs one worker has opened (kept across points), and the merged tensors of a message."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self._inputs: dict[tuple, MergeInputs] = {}

    def inputs(self, base: str, policies: list[str], source: str) -> MergeInputs:
        key = (base, tuple(policies), source)
        if key not in self._inputs:
            if source == "disk":
                self._inputs[key] = MergeInputs(base, list(policies))
            else:
                on_gpu = self.device.type != "cpu"
                store = self.device if source == "device" else torch.device("cpu")
                self._inputs[key] = ResidentInputs(base, list(policies), store, self.device,
                                                   pin=on_gpu and source == "host")
        return self._inputs[key]

    def merged_tensors(self, message: dict) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) for every tensor of θ0 merged as the message says, whole, in θ0's dtypes."""
        spec = MergeSpec.model_validate(message["spec"])
        source = message["source"]
        inputs = self.inputs(message["base"], message["policies"], source)
        on_device = source != "disk" and self.device.type != "cpu"
        return iter_merged_tensors(inputs, spec, block_elements=WHOLE_TENSORS if on_device else None)

    def close(self) -> None:
        for inputs in self._inputs.values():
            inputs.close()
        self._inputs.clear()


def load_in_place(worker, named_tensors) -> "_Counted":
    """Write checkpoint-format (Hugging Face named) tensors into a running vLLM worker's model; returns how many.

    The worker's `reload_weights` is the call that works on every build this project supports: on the CPU
    build, linear weights are re-packed for oneDNN at load time (the parameters themselves become empty), so
    the model's own `load_weights` cannot write into them; `reload_weights` restores the checkpoint layout,
    loads and re-packs. The whole state dict goes in one call, so fused groups (q/k/v, gate/up) are always
    written whole. Returns the counted stream: how many tensors, and the seconds spent producing them (the merge)."""
    counted = _Counted(named_tensors)
    reload = getattr(worker, "reload_weights", None)
    if reload is not None:
        reload(weights_iterator=counted, is_checkpoint_format=True)
        refresh_tied_layers(worker.model_runner.model)
    else:  # builds without in-place reloading (GPU only): the model's loader takes Hugging Face names
        worker.model_runner.model.load_weights(weights=counted)
    return counted


def refresh_tied_layers(model) -> int:
    """Re-derive the kernel state of layers whose weight is tied to another layer's (a tied LM head).

    A tied head shares the embedding's parameter, which the reload updates in place; but the head loads nothing
    itself, so the reload puts back the state derived from its old values — on the CPU build, the head's re-packed
    oneDNN copy, which would keep computing logits with θ0's embedding. Running the head's (unquantized) weight
    processing again re-derives it from the new values; on GPUs it derives nothing and costs nothing."""
    owners: dict[int, object] = {}
    refreshed = 0
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            owner = owners.setdefault(id(parameter), module)
            method = getattr(module, "quant_method", None)
            if owner is not module and method is not None and type(method).__name__.startswith("Unquantized"):
                method.process_weights_after_loading(module)
                refreshed += 1
    return refreshed


class _Counted:
    """The tensors handed to the loader, counted, with the time spent producing them (merging) kept apart from the
    time the loader spends on them."""

    def __init__(self, items):
        self.items, self.count, self.produce_seconds = items, 0, 0.0

    def __iter__(self):
        items = iter(self.items)
        while True:
            start = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                self.produce_seconds += time.perf_counter() - start
                return
            self.produce_seconds += time.perf_counter() - start
            self.count += 1
            yield item
