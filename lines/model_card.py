"""The README.md written beside a merged checkpoint: the full recipe, the inputs, and the λ(ℓ) applied."""
from __future__ import annotations

import yaml

from .engine import ResolvedLines
from .recipe import Recipe
from .task_vectors import MergeInputs


def render_model_card(recipe: Recipe, inputs: MergeInputs, lines: ResolvedLines | None, version: str) -> str:
    lines_out = ["---", "tags: [merge, lines, rewarded-soups]", "library_name: transformers", "---", "",
                 "# Merged model", "",
                 f"Made with `lines merge` (lines-soups {version}): θ = θ0 + λ(ℓ)·{recipe.method}(τ_1 … τ_N), "
                 f"τ_i = θ_i − θ0, computed in {recipe.compute_dtype}.", "",
                 "## Inputs", "", "| role | path | weight | files | size |", "|---|---|---|---|---|"]
    varying = recipe.spec().varying
    rows = [("base (θ0)", inputs.base, "")] + [
        (f"policy {i + 1}", ckpt, "varies by tensor" if f"weights.{i}" in varying else f"{m.weight:g}")
        for i, (ckpt, m) in enumerate(zip(inputs.policies, recipe.models))]
    for role, ckpt, weight in rows:
        files = sorted({info.file for info in ckpt.tensors.values()})
        size = sum(f.stat().st_size for f in files)
        lines_out.append(f"| {role} | `{ckpt.path.resolve()}` | {weight} | {len(files)} | {size:,} B |")
    lines_out += ["", f"Architecture: `{inputs.layer_map.model_type}` ({inputs.layer_map.spec.name} layer map), "
                      f"L = {inputs.num_layers} decoder blocks, tied embeddings: {inputs.layer_map.tied_embeddings}.",
                  "", "## LiNeS", ""]
    if lines is None:
        lines_out.append("Not applied (λ = 1 everywhere).")
    else:
        s = lines.schedule
        alpha_note = " (from `alpha: auto`: ‖Σ w̄_i τ_i‖₁/‖τ_merged‖₁, w̄ = w/Σw)" if lines.alpha_was_auto else ""
        outside = "α" if s.head_depth == "alpha" else "α for embeddings; λ(L−1) for the final norm and head"
        formula = "α + β·(ℓ/(L−1) − ½)" if s.profile == "centered" else "α + β·ℓ/(L−1)"
        lines_out += [f"λ(ℓ) = {formula} with α = {s.alpha:.6g}{alpha_note}, β = {s.beta:.6g}; "
                      f"parameters outside the blocks: {outside}.", "", "| block ℓ | λ(ℓ) |", "|---|---|"]
        lines_out += [f"| {layer} | {scale:.6g} |" for layer, scale in enumerate(s.layer_scales())]
    source = getattr(recipe, "mergekit", None)
    if source:  # read from a mergekit config: that config is what the user wrote
        lines_out += ["", "## mergekit config", "", f"Merged with mergekit's semantics (method `{recipe.method}`).",
                      "", "```yaml", yaml.safe_dump(source, sort_keys=False).rstrip(), "```", ""]
        return "\n".join(lines_out)
    recipe_yaml = yaml.safe_dump(recipe.model_dump(mode="json", exclude_none=True), sort_keys=False)
    lines_out += ["", "## Recipe", "", "```yaml", recipe_yaml.rstrip(), "```", ""]
    return "\n".join(lines_out)
