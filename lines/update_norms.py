"""Where a merge's update lives: L1 norms of the merged task vector, and of the weighted mean of the task vectors,
per parameter group (each decoder block, the embeddings, the final norm, the head).

One pass over the inputs gives everything LiNeS needs at a weight, for every β and profile at once:
- α for weighted soups, α(w) = ‖Σ_i w̄_i τ_i‖₁ / ‖τ_merged‖₁ with w̄ = w / Σw. At equal weights it is the paper's
  multi-task rule (1/N)·‖Σ_i τ_i‖₁ / ‖τ_merged‖₁; it is 1 for a linear soup and 1/Σw for task arithmetic (1/N at
  weights w_i = 1), and a policy of weight zero does not change it;
- the L1 norm of the LiNeS update Σ_g λ_g ‖τ_merged‖₁,g, and the single λ that gives the merged update the same norm
  (the norm-matched uniform control: the same magnitude as LiNeS at that point, without its depth profile).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .errors import LinesError
from .layer_map import BLOCK, ParamRole
from .prefetch import prefetched
from .schedule import LinesSchedule


def group_of(role: ParamRole) -> str:
    return f"{BLOCK}:{role.layer}" if role.kind == BLOCK else role.kind


def role_of(group: str) -> ParamRole:
    kind, _, layer = group.partition(":")
    return ParamRole(kind, int(layer)) if layer else ParamRole(kind)


@dataclass(frozen=True)
class MergeProfile:
    merged_l1: dict[str, float]  # ‖τ_merged‖₁ per group
    mean_l1: dict[str, float]    # ‖Σ_i w̄_i τ_i‖₁ per group

    def alpha(self) -> float:
        merged = sum(self.merged_l1.values())
        if merged == 0:
            raise LinesError("lines.alpha: auto is undefined because the merged task vector is zero "
                             "(policies identical to the base?); give a number instead")
        return sum(self.mean_l1.values()) / merged

    def update_l1(self, schedule: LinesSchedule) -> float:
        """‖λ(ℓ)·τ_merged‖₁ over all parameters (each group scaled as the schedule scales it)."""
        return sum(abs(schedule.scale(role_of(g))) * norm for g, norm in self.merged_l1.items())

    def matched_lambda(self, schedule: LinesSchedule) -> float:
        """The uniform λ ≥ 0 with ‖λ·τ_merged‖₁ = ‖λ(ℓ)·τ_merged‖₁."""
        merged = sum(self.merged_l1.values())
        if merged == 0:
            raise LinesError("the merged task vector is zero: no uniform scale can match its norm")
        return self.update_l1(schedule) / merged

    def to_dict(self) -> dict:
        return {"merged_l1": self.merged_l1, "mean_l1": self.mean_l1}

    @classmethod
    def from_dict(cls, data: dict) -> "MergeProfile":
        return cls(dict(data["merged_l1"]), dict(data["mean_l1"]))


def normalised_weights(weights: list[float]) -> list[float]:
    total = sum(weights)
    if total == 0:
        raise LinesError("lines.alpha: auto weighs the task vectors by w / Σw, and these weights sum to zero; give "
                         "alpha as a number")
    return [w / total for w in weights]


def merge_profile(merger, progress: bool = False) -> MergeProfile:
    """One pass over the inputs of `merger` (a lines.engine.TensorMerger): per-group L1 norms, in fp64."""
    inputs = merger.inputs
    mean_weights: dict[int, torch.Tensor] = {}  # per distinct settings (weights may differ between tensors)
    merged: dict[str, float] = {}
    mean: dict[str, float] = {}
    items = [(n, r) for n, r in merger.blocks() if inputs.base.info(n).dtype.is_floating_point]
    loaded = prefetched(items, lambda item: inputs.read_block(*item))
    for (name, _), raw in tqdm(loaded, total=len(items), desc="merge profile", disable=not progress, leave=False):
        base, tvs = inputs.task_vectors(name, merger.on_device(raw), merger.dtype)
        group = group_of(inputs.roles[name])
        settings = merger.settings(name)
        if id(settings) not in mean_weights:
            mean_weights[id(settings)] = torch.tensor(normalised_weights(settings.spec.weights), dtype=merger.dtype,
                                                       device=merger.device)
        weights = mean_weights[id(settings)]
        update = merger.merged_update(name, tvs, base)
        merged[group] = merged.get(group, 0.0) + float(update.abs().sum(dtype=torch.float64))
        weighted_mean = (tvs * weights.reshape((-1,) + (1,) * (tvs.dim() - 1))).sum(0)
        mean[group] = mean.get(group, 0.0) + float(weighted_mean.abs().sum(dtype=torch.float64))
    return MergeProfile(merged, mean)
