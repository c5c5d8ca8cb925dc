"""The interface between the sweep and a generation engine, with the engine's capabilities stated up front.

The sweep never probes a backend's attributes: it reads `capabilities` once and routes every point by it.

- Dense weights: the sweep sends a `MergeRequest` — a merge *specification* (θ0 and policy paths, method,
  weights, LiNeS), not tensors — and the backend builds the merged weights where its model lives and writes them
  in place. The transformers backend merges into its live module; a serving engine may build them in its
  workers. The request's `key` identifies the weights, so asking again for what is loaded costs nothing.
- LoRA soup adapters: the sweep writes each point's exact soup adapter (`AdapterRef`, named by its content key,
  so a name never stands for two different adapters), loads θ0 as the dense weights, and asks for generations
  with several adapters at once (`generate_adapters`). θ0 itself is generated with `generate`, never mixed
  into an adapter call.
- Several points in one call: `generate_adapters` serves up to `max_points_per_call` adapters (None: any
  number) in one call; dense weights are one point per call by nature.
- Idle time: `idle()` before the sweep scores a batch of points; an engine may free memory for the reward
  models (vLLM's sleep mode) and takes it back on the next call.
- The policy's own model, for metrics computed from its weights (KL to θ0, perplexity): `policy(adapter)`
  yields the live module holding the point; a backend without one says so and the sweep keeps its own copy.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

from lines.recipe import MergeSpec, canonical_merge
from reward_models import PolicyHandle

from .rows import GenerationRow


@dataclass(frozen=True)
class Capabilities:
    dense_weights: bool            # writes a dense merge (from a MergeRequest) into its model in place
    lora_adapters: bool            # serves LoRA soup adapters on top of θ0
    max_points_per_call: int | None  # adapters one generate() call serves together (None: no limit)
    max_lora_rank: int | None      # the largest adapter rank it serves (None: any)
    policy_model: bool             # exposes the live torch module of the point it generates with


@dataclass(frozen=True)
class MergeRequest:
    """Build θ0 + λ(ℓ)·merge(τ_1 … τ_N) from these checkpoints and write it into the model."""

    base: str
    policies: tuple[str, ...]
    spec: MergeSpec
    key: str  # identifies the resulting weights (content of the inputs + canonical merge)

    @property
    def is_base(self) -> bool:
        """Whether the merge is θ0 itself (every coefficient zero)."""
        canonical = canonical_merge(self.spec)
        return canonical["method"] == "task_arithmetic" and not any(canonical["weights"])


@dataclass(frozen=True)
class AdapterRef:
    """A PEFT adapter directory served on top of θ0; `name` is unique to its content."""

    name: str
    path: str


@runtime_checkable
class GenerationBackend(Protocol):
    capabilities: Capabilities
    tokenizer: Any
    # What generations depend on besides the sampling settings (engine, device type, dtype): part of cache keys.
    identity: dict

    def generate(self, prompts: Sequence) -> list[GenerationRow]:
        """n samples per prompt with the current dense weights, ordered by prompt then sample index."""

    def generate_adapters(self, prompts: Sequence, adapters: Sequence[AdapterRef]) -> list[list[GenerationRow]]:
        """`generate`'s rows for θ0 + each adapter, one list per adapter (only with `lora_adapters`, at most
        `max_points_per_call` adapters, with θ0 loaded as the dense weights)."""

    def load_merge(self, request: MergeRequest) -> None:
        """Make the model's dense weights the requested merge (only with `dense_weights`)."""

    def policy(self, adapter: AdapterRef | None = None) -> AbstractContextManager[PolicyHandle]:
        """The live model holding the current dense weights (or θ0 + `adapter`) (only with `policy_model`)."""

    def idle(self) -> None:
        """Nothing will be generated for a while (the sweep scores): an engine may free memory until the next call."""

    def close(self) -> None:
        """Release the engine."""
