"""Merge profiles of sweep points (lines/update_norms.py), computed once per merge and kept in the sweep's cache.

A profile depends on the inputs and the merge (method, weights, parameters) but not on LiNeS: one pass per weight
serves every β, every profile shape, α(w) and the norm-matched uniform control.
"""
from __future__ import annotations

import json
from pathlib import Path

from lines import MergeInputs
from lines.atomic import write_json
from lines.engine import TensorMerger
from lines.recipe import MergeSpec
from lines.update_norms import MergeProfile, merge_profile

from .cache import merge_key


class ProfileCache:
    def __init__(self, inputs: MergeInputs, models_fingerprint: dict, directory: Path):
        self.inputs, self.models, self.dir = inputs, models_fingerprint, Path(directory)

    def profile(self, spec: MergeSpec) -> MergeProfile:
        plain = spec.model_copy(update={"lines": None})
        path = self.dir / f"{merge_key(self.models, plain)}.json"
        if path.exists():
            return MergeProfile.from_dict(json.loads(path.read_text()))
        profile = merge_profile(TensorMerger(plain, self.inputs))
        write_json(path, profile.to_dict())
        return profile

    def resolve(self, spec: MergeSpec) -> tuple[MergeSpec, dict | None]:
        """The spec with `alpha: auto` replaced by its value at these weights, and the LiNeS schedule applied
        (α, λ(ℓ) per block, what parameters outside the blocks get) — recorded with every point."""
        if spec.lines is None:
            return spec, None
        merger = TensorMerger(spec, self.inputs)
        profile = None
        if spec.lines.alpha == "auto" and merger.closed_form_alpha() is None:
            profile = self.profile(spec)
        schedule = merger.resolve_lines(progress=False, profile=profile).schedule
        if spec.lines.alpha == "auto":
            spec = spec.model_copy(update={"lines": spec.lines.model_copy(update={"alpha": schedule.alpha})})
        applied = {"alpha": schedule.alpha, "beta": schedule.beta, "profile": schedule.profile,
                   "head_depth": schedule.head_depth, "block_scales": schedule.layer_scales(),
                   **({"reverse": True} if schedule.reverse else {}),
                   **({"scope": schedule.scope} if schedule.scope != "depth" else {})}
        return spec, applied

    def matched_lambda(self, spec: MergeSpec) -> float:
        """The uniform λ whose merged update has the L1 norm of `spec`'s LiNeS update."""
        resolved, _ = self.resolve(spec)
        schedule = TensorMerger(resolved, self.inputs).resolve_lines(progress=False).schedule
        return self.profile(spec).matched_lambda(schedule)
