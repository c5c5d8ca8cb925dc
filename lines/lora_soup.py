"""The exact rewarded soup of LoRA policies as one adapter: concatenate the factors, scale the B blocks.

    ΔW_soup(ℓ) = λ(ℓ)·Σ_i c_i·s_i·B_i·A_i = [c_1 λ s_1 B_1 | … | c_N λ s_N B_N] · [A_1; …; A_N]

One adapter of rank Σ r_i per module (each module keeps its own rank; its alpha equals its rank, so PEFT's
scaling is 1), small and servable without touching the base. Exact only for methods linear in the task
vectors (those with linear coefficients in the registry); the others need the dense output.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from .atomic import output_directory_beside, publish_directory, replace_directory
from .engine import ResolvedLines, TensorMerger
from .errors import LinesError
from .lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, AdapterCheckpoint
from .method_registry import get_method, method_names
from .peft_merge import PeftMergedCheckpoint
from .recipe import MergeSpec
from .task_vectors import MergeInputs


def adapter_soup_tensors(inputs: MergeInputs, spec: MergeSpec, lines: ResolvedLines | None
                         ) -> tuple[dict[str, torch.Tensor], dict[str, int], list[str]]:
    """(PEFT state dict, rank per module, modules_to_save) of the soup adapter."""
    adapters = inputs.policies
    if inputs.peft_merged:
        raise LinesError(not_one_adapter(inputs.peft_merged[0], "output: adapter", "output: dense"))
    if not adapters or not all(isinstance(a, AdapterCheckpoint) for a in adapters):
        raise LinesError("output: adapter needs every policy to be a LoRA adapter directory; "
                         "use output: dense to merge full checkpoints")
    if spec.varying:
        raise LinesError("output: adapter needs one weight per policy for every tensor; per-tensor values "
                         f"({', '.join(spec.varying)}) need output: dense")
    merger = TensorMerger(spec, inputs)
    coefficients = merger.coefficients
    if coefficients is None:
        linear = [m for m in method_names() if get_method(m).coefficients is not None]
        raise LinesError(f"output: adapter is exact only for {', '.join(linear[:-1])} and {linear[-1]}, not "
                         f"{spec.method}; use output: dense")
    fan = {bool(a.adapter.config.get("fan_in_fan_out", False)) for a in adapters}
    if len(fan) > 1:
        raise LinesError("adapters disagree on fan_in_fan_out; they cannot be concatenated into one adapter")
    lora_weights = {name for a in adapters for name in a.adapter.modules}
    saved = {name for a in adapters for name in a.adapter.full_tensors}
    conflict = sorted(lora_weights & saved)
    if conflict:
        owner = next(a for a in adapters if conflict[0] in a.adapter.full_tensors)
        raise LinesError(f"{owner.adapter.weights_file}: {conflict[0]!r} is a module_to_save here but a LoRA target "
                         f"in another adapter; one adapter cannot hold both (use output: dense)")
    scale = lambda name: 1.0 if lines is None else lines.schedule.scale(inputs.roles[name])
    state: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    for name in sorted(lora_weights):
        parts = [(c, a.adapter.modules[name]) for c, a in zip(coefficients.tolist(), adapters)
                 if name in a.adapter.modules]
        module = parts[0][1]
        A = torch.cat([m.A.to(torch.float32) for _, m in parts], dim=0)
        B = torch.cat([m.B.to(torch.float32) * (c * scale(name) * m.scaling) for c, m in parts], dim=1)
        a_key, b_key = ("lora_embedding_A", "lora_embedding_B") if module.embedding else ("lora_A.weight",
                                                                                       "lora_B.weight")
        state[f"{PEFT_PREFIX}{module.module}.{a_key}"] = A.contiguous()
        state[f"{PEFT_PREFIX}{module.module}.{b_key}"] = B.contiguous()
        ranks[module.module] = A.shape[0]
    for name in sorted(saved):  # modules_to_save: their merged full tensor, θ0 + λ·Σ c_i (M_i − θ0)
        base = inputs.base.read(name).to(torch.float32)
        update = sum(c * (a.read(name).to(torch.float32) - base) for c, a in zip(coefficients.tolist(), adapters))
        state[f"{PEFT_PREFIX}{name}"] = (base + scale(name) * update).to(inputs.base.info(name).dtype)
    return state, ranks, [n.removesuffix(".weight") for n in sorted(saved)]


def not_one_adapter(policy: PeftMergedCheckpoint, asked: str, instead: str) -> str:
    """Why a soup with this policy is no adapter, in one line: `asked` is the setting that wants one."""
    return (f"{asked} needs every policy's update to be linear in its adapter factors, and {policy.adapter_path} is a "
            f"{policy.kind} adapter, whose update is not (peft merges it into θ0), so no soup of it is one adapter; "
            f"use {instead}")


def soup_adapter_config(inputs: MergeInputs, ranks: dict[str, int], modules_to_save: list[str]) -> dict:
    """adapter_config.json of the soup: each module keeps its own total rank, and alpha = rank makes PEFT's
    scaling exactly 1 (the adapters' own scalings are already folded into the B blocks)."""
    first = inputs.policies[0].adapter.config
    return {**first, "r": max(ranks.values()), "lora_alpha": max(ranks.values()), "use_rslora": False,
            "target_modules": sorted(ranks), "modules_to_save": modules_to_save or None,
            "rank_pattern": {re.escape(m): r for m, r in ranks.items()},
            "alpha_pattern": {re.escape(m): r for m, r in ranks.items()},
            "base_model_name_or_path": first.get("base_model_name_or_path") or str(inputs.base.path)}


def write_adapter_soup(inputs: MergeInputs, spec: MergeSpec, out_dir: Path, lines: ResolvedLines | None,
                       card: str, keep_existing: bool = False) -> Path:
    """Write the soup as a PEFT adapter directory (atomically: a temporary directory renamed on success).

    `keep_existing`: `out_dir` is named by the soup's content, so a finished one already there (written by another
    process meanwhile) is kept and this copy discarded, rather than replaced through a moment without it."""
    state, ranks, modules_to_save = adapter_soup_tensors(inputs, spec, lines)
    config = soup_adapter_config(inputs, ranks, modules_to_save)
    tmp = output_directory_beside(out_dir)
    try:
        save_file(state, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(card)
        if keep_existing:
            publish_directory(tmp, out_dir)
        else:
            replace_directory(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def soup_rank(inputs: MergeInputs) -> int:
    """The largest per-module rank a soup of these adapters has (what a LoRA server must accept)."""
    ranks: dict[str, int] = {}
    for adapter in inputs.adapters:
        for name, module in adapter.adapter.modules.items():
            ranks[name] = ranks.get(name, 0) + module.rank
    return max(ranks.values(), default=0)
