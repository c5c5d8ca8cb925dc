"""The bookkeeping of a backend's dense weights: what they are now, and the merge inputs opened to build others."""
from __future__ import annotations

from lines import MergeInputs

from .protocol import MergeRequest


class DenseWeights:
    """What a backend's dense weights are now, and the merge inputs it has opened to build requested ones.
    A backend starts from θ0's checkpoint; asking for the weights it holds costs nothing."""

    def __init__(self):
        self.key: str | None = None
        self.is_base = True
        self._inputs: dict[tuple, MergeInputs] = {}

    def holds(self, request: MergeRequest) -> bool:
        return request.key == self.key or (request.is_base and self.is_base)

    def inputs(self, request: MergeRequest) -> MergeInputs:
        key = (request.base, request.policies)
        if key not in self._inputs:
            self._inputs[key] = MergeInputs(request.base, list(request.policies))
        return self._inputs[key]

    def now(self, request: MergeRequest) -> None:
        self.key, self.is_base = request.key, request.is_base

    def close(self) -> None:
        for inputs in self._inputs.values():
            inputs.close()
        self._inputs.clear()
