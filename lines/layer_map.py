"""Which decoder block (depth) each parameter belongs to, read from architecture data files.

Architecture knowledge lives in `lines/architectures/*.json`, one file per naming scheme, keyed by the
`model_type` of config.json. Every parameter must match exactly one rule; a name that matches none is an
error naming the file to extend, never a silent guess (a guessed depth would silently mis-scale it).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import LinesError

ARCHITECTURES_DIR = Path(__file__).parent / "architectures"

# Roles of parameters outside the decoder blocks. LiNeS gives all of them α (as the reference code does);
# with head_depth: last, "final" and "head" are placed at depth L-1 instead.
BLOCK, EMBEDDING, FINAL, HEAD = "block", "embedding", "final", "head"


@dataclass(frozen=True)
class ParamRole:
    kind: str  # block | embedding | final | head
    layer: int | None = None  # decoder block index for kind == block


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    model_types: tuple[str, ...]
    num_layers_keys: tuple[str, ...]
    tie_defaults: dict
    block: re.Pattern
    embedding: tuple[re.Pattern, ...]
    final: tuple[re.Pattern, ...]
    head: tuple[re.Pattern, ...]
    tied_head: re.Pattern | None
    # Checkpoint name -> in-memory module name, where transformers renames on load (regex, replacement).
    module_renames: tuple[tuple[re.Pattern, str], ...] = ()


@lru_cache(maxsize=None)
def architecture_specs() -> dict[str, ArchitectureSpec]:
    """model_type -> spec, from every JSON file in lines/architectures/."""
    specs: dict[str, ArchitectureSpec] = {}
    for path in sorted(ARCHITECTURES_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        spec = ArchitectureSpec(
            name=path.stem,
            model_types=tuple(data["model_types"]),
            num_layers_keys=tuple(data["num_layers_keys"]),
            tie_defaults=data.get("tie_word_embeddings_default", {"*": False}),
            block=re.compile(data["block"]),
            embedding=tuple(re.compile(p) for p in data["embedding"]),
            final=tuple(re.compile(p) for p in data["final"]),
            head=tuple(re.compile(p) for p in data["head"]),
            tied_head=re.compile(data["tied_head"]) if data.get("tied_head") else None,
            module_renames=tuple((re.compile(a), b) for a, b in data.get("module_renames", [])),
        )
        for model_type in spec.model_types:
            if model_type in specs:
                raise LinesError(f"model_type {model_type!r} is declared twice in {ARCHITECTURES_DIR}")
            specs[model_type] = spec
    return specs


@dataclass(frozen=True)
class LayerMap:
    """Parameter name -> role for one checkpoint family with a known number of decoder blocks."""

    spec: ArchitectureSpec
    model_type: str
    num_layers: int
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config: dict, source: str) -> "LayerMap":
        model_type = config.get("model_type")
        if not model_type:
            raise LinesError(f"{source}: config.json has no 'model_type'; it is needed to pick the layer map")
        specs = architecture_specs()
        if model_type not in specs:
            known = ", ".join(sorted(specs))
            raise LinesError(
                f"{source}: unknown architecture model_type={model_type!r}; add it to a file in "
                f"{ARCHITECTURES_DIR} (known: {known})")
        spec = specs[model_type]
        num_layers = next((config[k] for k in spec.num_layers_keys if type(config.get(k)) is int), None)  # not bool
        if num_layers is None or num_layers < 1:
            raise LinesError(f"{source}: config.json needs a positive integer layer count in one of "
                             f"{list(spec.num_layers_keys)} for model_type={model_type!r}")
        tie_default = spec.tie_defaults.get(model_type, spec.tie_defaults.get("*", False))
        tied = bool(config.get("tie_word_embeddings", tie_default))
        return cls(spec=spec, model_type=model_type, num_layers=num_layers, tied_embeddings=tied)

    def role(self, name: str) -> ParamRole:
        match = self.spec.block.search(name)
        if match:
            layer = int(match.group(1))
            if layer >= self.num_layers:
                raise LinesError(f"tensor {name!r} is in block {layer} but config.json declares "
                                 f"{self.num_layers} layers")
            return ParamRole(BLOCK, layer)
        if any(p.search(name) for p in self.spec.embedding):
            return ParamRole(EMBEDDING)
        if any(p.search(name) for p in self.spec.final):
            return ParamRole(FINAL)
        if any(p.search(name) for p in self.spec.head):
            # A tied output head is the embedding matrix saved twice: it must get the embedding's scale,
            # or the two copies of one tensor would disagree.
            if self.tied_embeddings and self._is_output_embedding(name):
                return ParamRole(EMBEDDING)
            return ParamRole(HEAD)
        raise LinesError(
            f"tensor {name!r} matches no rule of architecture {self.spec.name!r} "
            f"(model_type={self.model_type!r}); add a pattern for it to "
            f"{ARCHITECTURES_DIR / (self.spec.name + '.json')}")

    def module_name_candidates(self, name: str) -> list[str]:
        """Names under which a checkpoint tensor may appear in a loaded model."""
        names = [name] + [pattern.sub(repl, name) for pattern, repl in self.spec.module_renames
                          if pattern.search(name)]
        return names

    def _is_output_embedding(self, name: str) -> bool:
        if self.spec.tied_head is not None:
            return bool(self.spec.tied_head.search(name))
        return name in ("lm_head.weight", "embed_out.weight")
