"""Policies given by path instead of trained: checked against θ0 before any training starts.

Full checkpoints go through the merge engine's own input check (`lines.MergeInputs`: same architecture,
layer count, tensor names, shapes), so a policy that passes here is one `lines.merge` accepts. Adapters
are checked tensor by tensor against θ0's modules (built on the meta device: no weights are loaded).
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from lines import LinesError, MergeInputs
from lines.checkpoint import read_safetensors_header
from lines.errors import first_line
from lines.lora import (ADAPTER_CONFIG, check_rank_fits, is_adapter_dir, missing_target_module,
                        read_adapter_config)
from lines.models import resolve_local

from .errors import TrainingError

_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>A|B)(?:\.[^.]+)?\.weight$")


def resolve_loaded(path: str, where: str) -> Path:
    local = resolve_local(path, f"{where}: path")
    if not (local / "config.json").is_file() and not (local / ADAPTER_CONFIG).is_file():
        raise TrainingError(f"{where}: '{path}' has neither config.json (a full checkpoint) nor {ADAPTER_CONFIG} (a "
                            "PEFT adapter); give a policy saved with save_pretrained")
    return local


def validate_against_base(policy: Path, base: Path, where: str) -> None:
    if is_adapter_dir(policy):
        check_adapter(policy, base, where)
        return
    try:
        with MergeInputs(base, [policy]):
            pass
    except LinesError as err:
        raise TrainingError(f"{where}: not compatible with θ0 '{base}': {err}") from None


def check_adapter(adapter: Path, base: Path, where: str) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM  # heavy: only when a loaded policy is checked

    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise TrainingError(f"{where}: adapter '{adapter}' has no adapter_model.safetensors; re-save it with "
                            "save_pretrained (safetensors)")
    try:
        config = read_adapter_config(adapter)  # peft_type, ranks, alphas, target_modules
        tensors, _ = read_safetensors_header(weights)
    except LinesError as err:
        raise TrainingError(f"{where}: {err}") from None
    try:
        # Never θ0's own code: a config.json with an auto_map is refused here (trust_remote_code=False).
        base_config = AutoConfig.from_pretrained(str(base), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise TrainingError(f"{where}: cannot read θ0's config '{base}' ({first_line(err)})") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(base_config)
    modules = dict(model.named_modules())
    missing = missing_target_module(config, set(modules))
    if missing is not None:
        raise TrainingError(f"{where}: adapter '{adapter}' has target_modules {missing!r}, which no module of θ0 "
                            f"'{base}' matches; the adapter was trained on another architecture")
    for name, info in tensors.items():
        match = _LORA_KEY.match(name)
        if match is None:
            continue
        module = modules.get(match["module"])
        if module is None:
            raise TrainingError(f"{where}: adapter tensor '{name}' targets module '{match['module']}', which θ0 "
                                f"'{base}' does not have; the adapter was trained on another architecture")
        in_features, out_features = getattr(module, "in_features", None), getattr(module, "out_features", None)
        if in_features is None:
            continue
        shape = info.shape
        rank = shape[0] if match["part"] == "A" else shape[-1]
        try:
            check_rank_fits(f"{where}: adapter '{adapter}'", match["module"], rank, in_features, out_features)
        except LinesError as err:
            raise TrainingError(str(err)) from None
        expected_ok = shape[-1] == in_features if match["part"] == "A" else shape[0] == out_features
        if not expected_ok:
            raise TrainingError(f"{where}: adapter tensor '{name}' has shape {list(shape)}, which does not fit θ0's "
                                f"module '{match['module']}' ({in_features} → {out_features}); the adapter was "
                                "trained on a model of another size")
