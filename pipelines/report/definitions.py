"""What every front a report names is: one sentence per variant and control, from the run's own config."""
from __future__ import annotations

from ..sweep.variants import MATCHED, UNIFORM, matched_front
from .data import RunData

PROFILES = {"increasing": "λ(ℓ) = α + β·ℓ/(L−1) (the paper's increasing profile: shallow blocks near θ0)",
            "centered": "λ(ℓ) = α + β·(ℓ/(L−1) − ½) (centered: mean block scale α, shallow blocks pulled toward θ0 "
                        "and deep ones extrapolated by as much)"}


def _grid(lines: dict) -> str:
    return f"β = {lines['beta']}" if lines.get("beta") is not None else \
        f"β chosen on validation prompts from {lines.get('beta_grid')}"


def variant_definition(spec: dict) -> str:
    method = spec.get("method", "linear")
    base = "the linear soup θ0 + Σ w_i τ_i" if method == "linear" else f"the `{method}` merge of the task vectors"
    lines = spec.get("lines")
    if not lines:
        return f"{base} at each weight w (no LiNeS)."
    profile = lines.get("profile", "increasing")
    text = PROFILES.get(profile, f"profile `{profile}`")
    if lines.get("reverse"):
        text += ", reversed: the same λ values in decreasing depth order (deep blocks nearest θ0)"
    scope = lines.get("scope", "depth")
    if scope == "head":
        text = ("head only: every block and the embeddings keep α; only the final norm and the output head get "
                "λ(L−1) of " + text)
    head = "the final norm and the output head at λ(L−1) (head_depth: last)" if lines.get("head_depth") == "last" \
        else "embeddings, final norm and output head at α (head_depth: alpha)"
    alpha = "α = ‖Σ w̄_i τ_i‖₁ / ‖τ_merged‖₁ at each weight (1 for a linear soup)" if lines.get("alpha", "auto") == \
        "auto" else f"α = {lines['alpha']}"
    return f"LiNeS on {base}: the merged update of block ℓ scaled by {text}; {head}; {alpha}; {_grid(lines)}."


def front_definitions(data: RunData) -> dict[str, str]:
    """{front name: its definition} for every front of the run, in the run's order."""
    sweep = data.config.get("sweep") or {}
    specs = {spec["name"]: spec for spec in sweep.get("variants") or []}
    control = sweep.get("uniform_control") or {}
    per_block = control.get("matched_per_block", False)
    out = {}
    for front in data.fronts():
        if front in specs:
            out[front] = variant_definition(specs[front])
        elif front == UNIFORM:
            grid = control.get("lambda_grid") or "the mean block scales of the LiNeS candidates"
            out[front] = ("tuned uniform control: the linear soup's merged update scaled by one λ, chosen on "
                          f"validation prompts like LiNeS' β from {grid}.")
        elif front.startswith(f"{MATCHED}["):
            variant = front[len(MATCHED) + 1:-1]
            assert matched_front(variant) == front
            out[front] = (f"norm-matched control of `{variant}`: at each weight, the linear soup's merged update "
                          f"scaled by one λ that gives it the L1 norm of `{variant}`'s update there, over the whole "
                          "model" + (" (matched_per_block: each block scaled to that block's L1 norm)"
                                     if per_block else "")
                          + " — the same magnitude without the depth profile (L1 parity is not closeness in "
                          "behaviour: compare their KL).")
        else:
            out[front] = "a front of this run."
    return out
