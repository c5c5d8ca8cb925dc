"""Which generation backend runs: vLLM only where it imports and CUDA is present, else transformers."""
from __future__ import annotations

import importlib.util
import logging

import torch

from ..errors import PipelineError
from .config import GenerationConfig, parse_generation_config

log = logging.getLogger(__name__)


def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_backend(requested: str = "auto") -> tuple[str, str]:
    """(backend, reason). `auto` never fails; an explicit `vllm` without vLLM or CUDA is one clear error."""
    has_vllm, has_cuda = vllm_importable(), torch.cuda.is_available()
    if requested == "transformers":
        return "transformers", "asked for in the config"
    if requested == "vllm":
        if not has_vllm:
            raise PipelineError("generation.backend is vllm but vllm is not installed; install the `vllm` extra "
                                "on a CUDA machine or set backend: transformers")
        if not has_cuda:
            raise PipelineError("generation.backend is vllm but no CUDA device is visible; "
                                "set backend: transformers (or auto) on this machine")
        return "vllm", "asked for in the config"
    if has_vllm and has_cuda:
        return "vllm", "vllm is installed and CUDA is available"
    missing = " and ".join(x for x, ok in (("vllm is not installed", has_vllm), ("no CUDA device", has_cuda)) if not ok)
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
        from .vllm_backend import VLLMGenerator

        return VLLMGenerator(model_path, config, tokenizer=tokenizer)
    from .transformers_backend import TransformersGenerator

    if model is not None and tokenizer is not None:
        return TransformersGenerator(model, tokenizer, config)
    if model_path is None:
        raise PipelineError("make_generator needs model_path, or model and tokenizer")
    return TransformersGenerator.from_pretrained(model_path, config)
