"""Device and dtype names from config ('auto', 'cpu', 'cuda:1'; 'auto', 'float32', 'bfloat16', ...)."""
from __future__ import annotations

import torch

from .errors import RewardError

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RewardError(f"device '{name}' was asked for but CUDA is not available here; use device: auto or cpu")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on a GPU that supports it (the usual serving dtype), float32 elsewhere."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in _DTYPES:
        raise RewardError(f"dtype '{name}' is not known; use one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]
