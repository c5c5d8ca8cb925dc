"""Values that vary by tensor: mergekit's per-layer gradients and tensor-name filters, evaluated as mergekit does.

A setting is a list of conditions; the first whose `filter` is a substring of the tensor's name (or that has no
filter) gives the value. A value is a number, a bool, or a gradient: a list of anchor values spread evenly over the
depth t ∈ [0, 1] and interpolated linearly between neighbours (bools are picked, not interpolated).

    weight: [{filter: self_attn, value: [0.0, 0.5, 1.0]}, {value: 0.3}]

Depth follows mergekit: decoder block ℓ of L sits at t = ℓ/(L−1) (t = 1 when L = 1), every tensor outside the blocks
(embeddings, final norm, head) at t = 0. At t = ℓ/(L−1) a two-anchor gradient [a, b] is a + (b − a)·ℓ/(L−1): the
shape of a LiNeS schedule, which is why a LiNeS soup is a mergekit gradient (see lines/mergekit_export.py).
"""
from __future__ import annotations

from typing import Union

from pydantic import ConfigDict, StrictBool

from .layer_map import BLOCK, ParamRole
from .schema import StrictModel

# StrictBool: YAML's 1 stays the number 1.0, never True.
Scalar = Union[StrictBool, float]
Value = Union[Scalar, list[Scalar]]


class Condition(StrictModel):
    model_config = ConfigDict(frozen=True)

    filter: str | None = None
    value: Value


class VaryingValue(StrictModel):
    """One value (a policy's weight, or a method parameter) that differs between tensors.

    `required`: a tensor that no condition matches is an error (mergekit's "missing required parameter"); otherwise
    such a tensor takes the value of the spec's static field."""

    model_config = ConfigDict(frozen=True)

    conditions: list[Condition]
    required: bool = False


def depth(role: ParamRole, num_layers: int) -> float:
    """mergekit's t of a tensor: ℓ/(L−1) in block ℓ (1 with a single block), 0 outside the blocks."""
    if role.kind != BLOCK:
        return 0.0
    return role.layer / (num_layers - 1) if num_layers > 1 else 1.0


def evaluate_value(value: Value, t: float) -> Scalar:
    """A value at depth t. The interpolation is mergekit's own arithmetic (config.evaluate_setting), so the two tools
    agree to the last bit on the weights they compute with."""
    if not isinstance(value, list):
        return value
    if any(isinstance(v, bool) for v in value):
        return value[int(t * (len(value) - 1))]
    scaled = t * (len(value) - 1)
    i0 = int(scaled)
    i1 = min(len(value) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * value[i0] + frac * value[i1]


def evaluate(conditions: list[Condition], tensor_name: str, t: float) -> Scalar | None:
    """The value of the first condition that applies to `tensor_name` (a substring filter, '*' or none), or None."""
    for condition in conditions:
        if condition.filter is None or condition.filter == "*" or (tensor_name and condition.filter in tensor_name):
            return evaluate_value(condition.value, t)
    return None
