"""The LiNeS schedule: the merged update of decoder block ℓ is scaled by λ(ℓ) = α + β·ℓ/(L−1).

"increasing" is the paper's profile: the first block keeps α of its update, the last α + β. "centered" shifts it by
−β/2 so the mean over the blocks is α: shallow blocks are pulled toward θ0 and deep ones extrapolated by the same
amount, which changes where the update sits without changing how much of it the blocks keep on average.
Controls: `reverse` gives block ℓ the profile's λ(L−1−ℓ) (the same values, deep blocks nearest θ0: depth order
apart from the set of magnitudes); `scope: head` keeps every block and the embeddings at α and scales only the final
norm and the head, by λ(L−1) (what `head_depth: last` gives them: the head's part of a profile alone).
"""
from __future__ import annotations

from dataclasses import dataclass

from .layer_map import BLOCK, FINAL, HEAD, ParamRole


@dataclass(frozen=True)
class LinesSchedule:
    alpha: float
    beta: float
    num_layers: int
    head_depth: str = "alpha"  # "alpha": parameters outside the blocks get α; "last": final norm/head get λ(L−1)
    profile: str = "increasing"  # or "centered"
    reverse: bool = False  # the same λ values in decreasing depth order (block ℓ gets the profile's λ(L−1−ℓ))
    scope: str = "depth"  # "head": blocks and embeddings keep α; only the final norm and the head get λ(L−1)

    @classmethod
    def single_task(cls, gamma: float, num_layers: int, head_depth: str = "alpha") -> "LinesSchedule":
        """Editing one fine-tuned model: α = γ, β = 1 − γ, so the last block keeps its full update."""
        return cls(alpha=gamma, beta=1.0 - gamma, num_layers=num_layers, head_depth=head_depth)

    def layer_scale(self, layer: int) -> float:
        # With a single block, that block is the last one: it gets α + β.
        depth = layer / (self.num_layers - 1) if self.num_layers > 1 else 1.0
        if self.reverse and self.num_layers > 1:
            depth = 1.0 - depth
        if self.profile == "centered":
            depth -= 0.5
        return self.alpha + self.beta * depth

    def scale(self, role: ParamRole) -> float:
        if self.scope == "head":
            return self.layer_scale(self.num_layers - 1) if role.kind in (FINAL, HEAD) else self.alpha
        if role.kind == BLOCK:
            return self.layer_scale(role.layer)
        if self.head_depth == "last" and role.kind in (FINAL, HEAD):
            return self.layer_scale(self.num_layers - 1)
        return self.alpha

    def layer_scales(self) -> list[float]:
        """The scale each block's update gets."""
        if self.scope == "head":
            return [self.alpha] * self.num_layers
        return [self.layer_scale(layer) for layer in range(self.num_layers)]

