"""The streaming merge: one tensor (or one block of rows) per model in memory at a time.

    θ = θ0 + λ(ℓ) · merge_method(τ_1 … τ_N; weights)        τ_i = θ_i − θ0, computed in fp32 (or fp64)

`TensorMerger` computes merged tensors, on the CPU or on a GPU (`device`); `lines.merge.merge` writes them as a sharded
checkpoint and `lines.merge.merge_into_model` copies them into the parameters of a loaded model (no disk round trip,
for sweeps).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm.auto import tqdm

from .errors import LinesError
from .method_registry import MergeContext, MergeMethod, get_method
from .prefetch import prefetched
from .recipe import MergeSpec
from .schedule import LinesSchedule
from .task_vectors import COMPUTE_DTYPES, MergeInputs
from .tensor_values import depth
from .update_norms import MergeProfile, merge_profile, normalised_weights

# Elementwise methods stream large tensors in row blocks of at most this many elements per model: memory stays
# flat as models grow, and a block small enough to stay in the CPU cache makes the several passes over it
# nearly free. Methods with per-tensor statistics (TIES top-k, DARE masks, SLERP angles) see whole tensors.
BLOCK_ELEMENTS = 1 << 18
WHOLE_TENSORS = 1 << 62


@dataclass(frozen=True)
class ResolvedLines:
    """The LiNeS schedule actually applied, with α resolved when the recipe said `auto`."""

    schedule: LinesSchedule
    alpha_was_auto: bool


@dataclass(frozen=True)
class TensorSettings:
    """What one tensor is merged with: the spec resolved for it, as tensors and filled-in parameters."""

    spec: MergeSpec
    weights: torch.Tensor
    params: dict
    coefficients: torch.Tensor | None  # τ_merged = Σ_i c_i τ_i, for methods linear in the task vectors

    @classmethod
    def of(cls, spec: MergeSpec, method: MergeMethod, dtype: torch.dtype,
           device: torch.device = torch.device("cpu")) -> "TensorSettings":
        weights = torch.tensor(spec.weights, dtype=dtype)
        params = method.resolved_parameters(spec.weights, spec.parameters)
        return cls(spec, weights.to(device), params, method.linear_coefficients(weights, params))


def compute_device(device: str | torch.device | None) -> torch.device:
    """Where a merge computes: the CPU (None) or a GPU that is there; anything else is one line."""
    if device is None:
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise LinesError(f"device {device!r} is not a device name; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise LinesError(f"device {device!r}: no CUDA GPU is visible to this process; use --device cpu")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise LinesError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s); use an "
                             "index below that")
    elif resolved.type != "cpu":
        raise LinesError(f"device {device!r}: merges compute on cpu or cuda; use one of them")
    return resolved


class TensorMerger:
    """`device`: where the merge computes (None: the CPU). Inputs are read on the host and moved there block by
    block; merged blocks are yielded on that device. A GPU takes whole tensors (row blocks exist to fit the CPU's
    cache, and on a GPU they would only add launches)."""

    def __init__(self, spec: MergeSpec, inputs: MergeInputs, block_elements: int | None = None,
                 device: str | torch.device | None = None):
        if len(spec.weights) != len(inputs.policies):
            raise LinesError(f"{len(spec.weights)} weights for {len(inputs.policies)} policies")
        self.spec = spec
        self.inputs = inputs
        self.device = compute_device(device)
        self.dtype = COMPUTE_DTYPES[spec.compute_dtype]
        if block_elements is None:
            block_elements = BLOCK_ELEMENTS if self.device.type == "cpu" else WHOLE_TENSORS
        self.block_elements = block_elements
        self.method = get_method(spec.method)
        default = TensorSettings.of(spec, self.method, self.dtype, self.device)
        self.weights, self.params, self.coefficients = default.weights, default.params, default.coefficients
        self._settings = {name: default for name in inputs.names}
        if spec.varying:
            self._resolve_per_tensor()

    def _resolve_per_tensor(self) -> None:
        """Every tensor's own settings, resolved (and validated) before anything is read or written. Tensors that
        resolve to equal settings share one object. Whole-spec shortcuts (fused coefficients, closed-form α) are
        then taken per tensor, never for the spec as a whole."""
        shared: dict[str, TensorSettings] = {}
        for name in self.inputs.names:
            if not self.inputs.base.info(name).dtype.is_floating_point:
                continue
            resolved = self.spec.at(name, depth(self.inputs.roles[name], self.inputs.num_layers))
            key = json.dumps(resolved.model_dump(mode="json"), sort_keys=True)
            if key not in shared:
                shared[key] = TensorSettings.of(resolved, self.method, self.dtype, self.device)
            self._settings[name] = shared[key]
        self.coefficients = None

    def settings(self, name: str) -> TensorSettings:
        return self._settings[name]

    # -- per tensor ---------------------------------------------------------------------------------------
    def on_device(self, raw: list[torch.Tensor]) -> list[torch.Tensor]:
        """A block read on the host, moved to where the merge computes."""
        if self.device.type == "cpu":
            return raw
        return [tensor.to(self.device, non_blocking=True) for tensor in raw]

    def row_blocks(self, name: str) -> list[tuple[int, int] | None]:
        """[None] for a whole tensor, else consecutive row ranges of its first dimension."""
        info = self.inputs.base.info(name)
        if (not self.method.elementwise or len(info.shape) == 0
                or info.numel <= self.block_elements or self.inputs.base.is_pickle):
            return [None]
        row_elements = max(1, info.numel // info.shape[0])
        step = max(1, self.block_elements // row_elements)
        return [(start, min(start + step, info.shape[0])) for start in range(0, info.shape[0], step)]

    def merged_update(self, name: str, tvs: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """τ_merged for one tensor (or block) from its stacked task vectors (and θ0, for methods that need it)."""
        settings = self.settings(name)
        context = MergeContext(name, self.spec.seed, base if self.method.needs_base else None)
        return self.method.merge(tvs, settings.weights, settings.params, context)

    def blocks(self, only: set[str] | None = None) -> list[tuple[str, tuple[int, int] | None]]:
        """Every (tensor, rows) work item of one pass (over the tensors in `only`, if given), in θ0's storage
        order."""
        return [(name, rows) for name in self.inputs.names if only is None or name in only
                for rows in self.row_blocks(name)]

    def iter_merged(self, lines: ResolvedLines | None, out_dtype: dict[str, torch.dtype] | None = None,
                    progress: bool = True, desc: str = "merging", only: set[str] | None = None
                    ) -> Iterator[tuple[str, tuple[int, int] | None, torch.Tensor]]:
        """Yield (name, rows, merged block) for every tensor of θ0 (or those in `only`: one process's share), in
        θ0's storage order; inputs are read ahead in a background thread."""
        inputs = self.inputs
        total = sum(inputs.base.info(n).nbytes for n in inputs.names if only is None or n in only)
        with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not progress, leave=False) as bar:
            for (name, rows), raw in prefetched(self.blocks(only), lambda item: inputs.read_block(*item)):
                raw = self.on_device(raw)
                info = inputs.base.info(name)
                if not info.dtype.is_floating_point:
                    yield name, rows, inputs.identical_non_float(name, raw)
                else:
                    scale = 1.0 if lines is None else lines.schedule.scale(inputs.roles[name])
                    yield name, rows, self.merged_block(name, raw, scale).to((out_dtype or {}).get(name, info.dtype))
                bar.update(raw[0].numel() * info.dtype.itemsize)

    def merged_block(self, name: str, raw: list[torch.Tensor], scale: float) -> torch.Tensor:
        """θ0 + scale·τ_merged for a block read by `MergeInputs.read_block`, in the compute dtype."""
        coefficients = self.settings(name).coefficients
        if coefficients is not None:
            c = (scale * coefficients).tolist()
            return self.inputs.linear_combination(name, raw, self.dtype, 1.0 - sum(c), c)
        base, tvs = self.inputs.task_vectors(name, raw, self.dtype)
        return base + scale * self.merged_update(name, tvs, base)

    # -- LiNeS -------------------------------------------------------------------------------------------
    def resolve_lines(self, progress: bool = True, profile: MergeProfile | None = None) -> ResolvedLines | None:
        """The schedule applied: `alpha: auto` resolved (from `profile` when given, else in closed form where the
        method allows it, else by one pass over the inputs)."""
        cfg = self.spec.lines
        if cfg is None:
            return None
        num_layers = self.inputs.num_layers
        if cfg.gamma is not None:
            return ResolvedLines(LinesSchedule.single_task(cfg.gamma, num_layers, cfg.head_depth), False)
        alpha = self.auto_alpha(progress, profile) if cfg.alpha == "auto" else float(cfg.alpha)
        return ResolvedLines(LinesSchedule(alpha, float(cfg.beta), num_layers, cfg.head_depth, cfg.profile,
                                           cfg.reverse, cfg.scope),
                             cfg.alpha == "auto")

    def auto_alpha(self, progress: bool = True, profile: MergeProfile | None = None) -> float:
        """α(w) = ‖Σ_i w̄_i τ_i‖₁ / ‖τ_merged‖₁ over all parameters, w̄ = w / Σw (the norms: lines/update_norms.py).

        A method whose merge is k·Σ_i w̄_i τ_i (a linear soup: k = 1; task arithmetic: k = Σw) has α = 1/k exactly,
        with no pass over the inputs; other methods need the norms of one pass."""
        if profile is not None:
            return profile.alpha()
        closed = self.closed_form_alpha()
        return closed if closed is not None else merge_profile(self, progress).alpha()

    def closed_form_alpha(self) -> float | None:
        """1/|k| when the merge is k·Σ_i w̄_i τ_i, else None (the norms of a pass are needed). The coefficients are
        recomputed in fp64: rounded to the compute dtype they would miss the proportionality test."""
        if self.coefficients is None or self.spec.varying:
            return None
        mean_weights = torch.tensor(normalised_weights(self.spec.weights), dtype=torch.float64)
        coefficients = self.method.linear_coefficients(torch.tensor(self.spec.weights, dtype=torch.float64),
                                                       self.params)
        k = float(coefficients.sum())
        if k != 0 and torch.allclose(coefficients, k * mean_weights, rtol=1e-12, atol=1e-15):
            return 1.0 / abs(k)
        return None
