"""The machine checks of `--check` when this machine has no GPU but the config is for one.

A config written for GPUs (bf16 training, the vLLM backend, `cuda` devices) is refused by `check_machine` on a
machine without CUDA, as a run there must be. Checking such a config offline, before going to the GPUs, should
check everything else this machine can: so the GPU-only settings are set aside (listed, not checked) and the
rest of `check_machine` runs on the config without them.
"""
from __future__ import annotations

from typing import Any

from ..run_config import RunConfig, check_machine

GPU_PRECISIONS = ("bf16", "fp16")


def gpu_only_settings(data: Any, where: str = "") -> list[str]:
    """Dotted fields of a dumped config that only a GPU machine can honour; set to `auto` in `data` in place."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            field = f"{where}.{key}" if where else str(key)
            if key == "precision" and value in GPU_PRECISIONS:
                found.append(f"{field}: {value}")
                data[key] = "auto"
            elif key == "device" and isinstance(value, str) and value.startswith("cuda"):
                found.append(f"{field}: {value}")
                data[key] = "auto"
            elif field == "generation.backend" and value == "vllm":
                found.append(f"{field}: {value}")
                data[key] = "auto"
            else:
                found += gpu_only_settings(value, field)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += gpu_only_settings(value, f"{where}.{index}")
    return found


def check_machine_for_plan(cfg: RunConfig) -> list[str]:
    """`check_machine` on this machine; without CUDA, on the config less its GPU-only settings, which are
    returned (to be listed as not checked here)."""
    import torch

    if torch.cuda.is_available():
        check_machine(cfg)
        return []
    data = cfg.model_dump(mode="json")
    set_aside = gpu_only_settings(data)
    check_machine(RunConfig.model_validate({**data, "source": cfg.source}) if set_aside else cfg)
    return set_aside
