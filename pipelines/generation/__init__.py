"""Generation backends behind one protocol (protocol.py): stated capabilities, dense merges written in place
from a merge specification, LoRA soups served as adapters, the policy's module for metrics.

    from pipelines.generation import make_generator
    generator = make_generator(model_path=base_dir, config=cfg.generation)
    generator.load_merge(MergeRequest(base, policies, spec, key))   # in place, between sweep points
    rows = generator.generate(prompt_set.evaluation)

Names are imported on first use: vLLM's workers import `pipelines.generation.vllm_worker`, which must not pull
transformers, the reward models or the sweep into every worker process.
"""
from __future__ import annotations

import importlib

_HOMES = {
    "choose_backend": "backend_choice", "make_generator": "backend_choice",
    "AdapterRef": "protocol", "Capabilities": "protocol", "GenerationBackend": "protocol", "MergeRequest": "protocol",
    "GenerationRow": "rows",
    "TransformersGenerator": "transformers_backend",
    "VLLMApi": "vllm_backend", "VLLMGenerator": "vllm_backend",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
