"""How each sweep point reaches the generation engine: as dense merged weights, or as an exact LoRA soup adapter.

Decided from the backend's stated capabilities and the inputs, never by probing the backend:
- dense: the merge is written into the engine's weights in place (every method, every kind of policy);
- adapter: with LoRA policies (and `lora_route` auto or adapter), a point whose method is linear in the task
  vectors is its exact soup adapter, served on θ0 without rewriting it, several points per call where the
  backend can. Other methods, or a soup of higher rank than the backend serves, fall back to dense (logged).
"""
from __future__ import annotations

import logging

from lines import MergeInputs
from lines.lora_soup import not_one_adapter, soup_rank
from lines.method_registry import get_method
from lines.recipe import MergeSpec

from ..errors import PipelineError
from ..generation.protocol import Capabilities

log = logging.getLogger(__name__)
ADAPTER, DENSE = "adapter", "dense"


class Router:
    def __init__(self, capabilities: Capabilities, inputs: MergeInputs, lora_route: str = "auto"):
        all_adapters = bool(inputs.adapters) and len(inputs.adapters) == len(inputs.policies)
        if lora_route == "adapter" and inputs.peft_merged:
            raise PipelineError(not_one_adapter(inputs.peft_merged[0], "sweep.lora_route: adapter",
                                                "lora_route: dense or auto"))
        if lora_route == "adapter" and not all_adapters:
            raise PipelineError("sweep.lora_route is adapter but not every policy is a LoRA adapter; use dense or auto")
        if lora_route == "adapter" and not capabilities.lora_adapters:
            raise PipelineError("sweep.lora_route is adapter but the generation backend does not serve LoRA adapters "
                                "(vllm: set generation.vllm.enable_lora: true); or use lora_route: dense")
        self.adapters = all_adapters and lora_route != "dense" and capabilities.lora_adapters
        self.capabilities = capabilities
        self._soup_rank: int | None = None
        self._explained: set[str] = set()
        if all_adapters and lora_route == "auto" and not capabilities.lora_adapters:
            log.info("sweep: LoRA policies, but the backend serves no adapters: every point is merged densely")
        elif self.adapters:
            log.info("sweep: LoRA policies, every point served as its exact soup adapter (the base is never "
                     "rewritten)")
        self.inputs = inputs

    def route(self, spec: MergeSpec) -> str:
        if not self.adapters or not any(spec.weights):
            return DENSE  # θ0 itself is the engine's dense weights
        if get_method(spec.method).coefficients is None:
            return self._fallback(f"method {spec.method} has no exact adapter form")
        limit = self.capabilities.max_lora_rank
        if limit is not None and self.soup_rank > limit:
            return self._fallback(f"the soup's rank {self.soup_rank} exceeds the backend's max_lora_rank {limit}")
        return ADAPTER

    @property
    def soup_rank(self) -> int:
        if self._soup_rank is None:
            self._soup_rank = soup_rank(self.inputs)
        return self._soup_rank

    def _fallback(self, why: str) -> str:
        if why not in self._explained:
            self._explained.add(why)
            log.info("sweep: %s; those points are merged densely into the engine's weights instead", why)
        return DENSE
