"""Per-layer task-vector diagnostics: where the policies' updates are large, and where they agree or conflict.

For every decoder block ℓ (and one group for everything outside the blocks): ‖τ_i‖₂ of every policy over the
block's parameters, and the cosine similarity cos(τ_i, τ_j) between every pair of policies.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .layer_map import BLOCK
from .prefetch import prefetched
from .task_vectors import MergeInputs

OUTSIDE = "outside"


@dataclass
class LayerDiagnostics:
    groups: list  # block indices 0…L−1, then "outside"
    norms: list[list[float]]  # norms[g][i] = ‖τ_i‖₂ over group g
    cosines: list[list[list[float]]]  # cosines[g][i][j]

    def to_dict(self) -> dict:
        return {"groups": self.groups, "norms": self.norms, "cosines": self.cosines}


def layer_diagnostics(inputs: MergeInputs, progress: bool = False) -> LayerDiagnostics:
    n = len(inputs.policies)
    groups = list(range(inputs.num_layers)) + [OUTSIDE]
    gram = {g: torch.zeros(n, n, dtype=torch.float64) for g in groups}  # Σ τ_i·τ_j per group
    names = [name for name in inputs.names if inputs.base.info(name).dtype.is_floating_point]
    for name, raw in prefetched(names, inputs.read_block):
        role = inputs.roles[name]
        group = role.layer if role.kind == BLOCK else OUTSIDE
        _, tvs = inputs.task_vectors(name, raw, torch.float64)
        flat = tvs.reshape(n, -1)
        gram[group] += flat @ flat.T
    norms, cosines = [], []
    for g in groups:
        diag = gram[g].diagonal().clamp_min(0).sqrt()
        norms.append(diag.tolist())
        denom = torch.outer(diag, diag)
        cos = torch.where(denom > 0, gram[g] / torch.where(denom > 0, denom, 1), 0.0)
        cosines.append(cos.tolist())
    return LayerDiagnostics(groups=groups, norms=norms, cosines=cosines)
