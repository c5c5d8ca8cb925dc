"""Code that runs inside vLLM's worker processes (named by `worker_extension_cls`).

vLLM mixes this class into each worker, so `self.model_runner` is the worker's model runner and
`LLM.collective_rpc("load_named_tensors", args=(chunk,))` calls the method on every worker (each tensor-
parallel rank receives the full tensors; the model's own `load_weights` shards them and maps Hugging
Face names onto vLLM's fused layers, e.g. q/k/v → qkv_proj). Keep this module free of heavy imports:
workers import it at start-up.
"""
from __future__ import annotations


class InPlaceWeightLoader:
    def load_named_tensors(self, named_tensors: list) -> int:
        """Write (name, tensor) pairs into the running model's weights; returns how many were given."""
        model = self.model_runner.model
        device = getattr(self, "device", None)
        weights = [(name, tensor.to(device) if device is not None else tensor) for name, tensor in named_tensors]
        model.load_weights(weights=weights)
        return len(weights)
