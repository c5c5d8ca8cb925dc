"""The streaming merge: one tensor (or one block of rows) per model in memory at a time.

    θ = θ0 + λ(ℓ) · merge_method(τ_1 … τ_N; weights)        τ_i = θ_i − θ0, computed in fp32 (or fp64)

`TensorMerger` computes merged tensors; `merge_to_directory` writes them as a sharded checkpoint and
`merge_into_model` copies them into the parameters of a loaded model (no disk round trip, for sweeps).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm.auto import tqdm

from . import merge_methods as mm
from .errors import LinesError
from .recipe import MergeSpec
from .schedule import LinesSchedule
from .task_vectors import COMPUTE_DTYPES, MergeInputs

# Elementwise methods stream large tensors in row blocks of at most this many elements per model, which
# keeps memory flat as models grow. Methods with per-tensor statistics (TIES top-k, DARE masks, SLERP
# angles) see whole tensors.
BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class ResolvedLines:
    """The LiNeS schedule actually applied, with α resolved when the recipe said `auto`."""

    schedule: LinesSchedule
    alpha_was_auto: bool


class TensorMerger:
    def __init__(self, spec: MergeSpec, inputs: MergeInputs, block_elements: int = BLOCK_ELEMENTS):
        if len(spec.weights) != len(inputs.policies):
            raise LinesError(f"{len(spec.weights)} weights for {len(inputs.policies)} policies")
        self.spec = spec
        self.inputs = inputs
        self.dtype = COMPUTE_DTYPES[spec.compute_dtype]
        self.weights = torch.tensor(spec.weights, dtype=self.dtype)
        self.block_elements = block_elements

    # -- per tensor ---------------------------------------------------------------------------------------
    def row_blocks(self, name: str) -> list[tuple[int, int] | None]:
        """[None] for a whole tensor, else consecutive row ranges of its first dimension."""
        info = self.inputs.base.info(name)
        if (self.spec.method not in mm.ELEMENTWISE_METHODS or len(info.shape) == 0
                or info.numel <= self.block_elements or self.inputs.base.is_pickle):
            return [None]
        row_elements = max(1, info.numel // info.shape[0])
        step = max(1, self.block_elements // row_elements)
        return [(start, min(start + step, info.shape[0])) for start in range(0, info.shape[0], step)]

    def merged_update(self, name: str, tvs: torch.Tensor) -> torch.Tensor:
        """τ_merged for one tensor (or block) from its stacked task vectors."""
        spec, p = self.spec, self.spec.parameters
        method = spec.method
        if method == "linear":
            return mm.linear(tvs, self.weights, p["normalize"])
        if method == "task_arithmetic":
            return mm.task_arithmetic(tvs, self.weights)
        if method == "ties":
            return mm.ties(tvs, self.weights, p["density"], p["normalize"])
        if method in ("dare_linear", "dare_ties"):
            seeds = [mm.dare_seed(spec.seed, name, i) for i in range(len(self.weights))]
            fn = mm.dare_linear if method == "dare_linear" else mm.dare_ties
            return fn(tvs, self.weights, p["density"], seeds, p["normalize"])
        if method == "consensus":
            return mm.consensus(tvs, self.weights, p["k"], p["tall_lambda"], p["normalize"])
        if method == "slerp":
            return mm.slerp(tvs, spec.slerp_t())
        raise LinesError(f"unknown merge method {method!r}")

    def iter_merged(self, lines: ResolvedLines | None, out_dtype: dict[str, torch.dtype] | None = None,
                    progress: bool = True, desc: str = "merging") -> Iterator[tuple[str, tuple[int, int] | None,
                                                                                     torch.Tensor]]:
        """Yield (name, rows, merged block) for every tensor of θ0, in θ0's storage order."""
        inputs = self.inputs
        total = sum(inputs.base.info(n).nbytes for n in inputs.names)
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress, leave=False) as bar:
            for name in inputs.names:
                info = inputs.base.info(name)
                target = (out_dtype or {}).get(name, info.dtype)
                if not info.dtype.is_floating_point:
                    yield name, None, inputs.read_non_float(name)
                    bar.update(info.nbytes)
                    continue
                scale = 1.0 if lines is None else lines.schedule.scale(inputs.roles[name])
                for rows in self.row_blocks(name):
                    base, tvs = inputs.base_and_task_vectors(name, rows, self.dtype)
                    merged = base + scale * self.merged_update(name, tvs)
                    yield name, rows, merged.to(target)
                    bar.update(merged.numel() * info.dtype.itemsize)

    # -- LiNeS -------------------------------------------------------------------------------------------
    def resolve_lines(self, progress: bool = True) -> ResolvedLines | None:
        cfg = self.spec.lines
        if cfg is None:
            return None
        num_layers = self.inputs.num_layers
        if cfg.gamma is not None:
            return ResolvedLines(LinesSchedule.single_task(cfg.gamma, num_layers, cfg.head_depth), False)
        alpha = self.auto_alpha(progress) if cfg.alpha == "auto" else float(cfg.alpha)
        return ResolvedLines(LinesSchedule(alpha, float(cfg.beta), num_layers, cfg.head_depth),
                             cfg.alpha == "auto")

    def auto_alpha(self, progress: bool = True) -> float:
        """The multi-task rule α = (1/N)·‖Σ_i τ_i‖₁ / ‖τ_merged‖₁ over all parameters (a first pass)."""
        sum_norm = torch.zeros((), dtype=torch.float64)
        merged_norm = torch.zeros((), dtype=torch.float64)
        inputs = self.inputs
        names = [n for n in inputs.names if inputs.base.info(n).dtype.is_floating_point]
        for name in tqdm(names, desc="alpha: auto", disable=not progress, leave=False):
            for rows in self.row_blocks(name):
                _, tvs = inputs.base_and_task_vectors(name, rows, self.dtype)
                sum_norm += tvs.sum(0).abs().sum(dtype=torch.float64)
                merged_norm += self.merged_update(name, tvs).abs().sum(dtype=torch.float64)
        if merged_norm == 0:
            raise LinesError("lines.alpha: auto is undefined because the merged task vector is zero "
                             "(policies identical to the base?); give a number instead")
        return float(sum_norm / merged_norm) / len(inputs.policies)
