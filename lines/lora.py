"""LoRA adapters as policies: their exact updates ΔW = s·B·A, and exact soups of them in adapter space.

A PEFT adapter directory (adapter_config.json + adapter_model.safetensors) is read as the full policy
θ_i = θ0 + ΔW_i, tensor by tensor, so every merge method treats it like any other checkpoint. Averaging A and B
separately (as weight-averaging of adapters usually does) adds cross terms B_i·A_j; here the soup is always
Σ_i c_i·ΔW_i, computed from each adapter's own product.

Scaling s comes from each module's own rank (A's rows) and alpha (alpha_pattern, else lora_alpha):
s = alpha/r, or alpha/√r with rsLoRA. Conv1D layers (fan_in_fan_out) and embeddings store ΔWᵀ.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from .checkpoint import Checkpoint, TensorInfo, read_safetensors_header
from .errors import LinesError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A|lora_B)\.weight$")
_EMBEDDING_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_embedding_A|lora_embedding_B)$")


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def read_adapter_config(path: str | Path) -> dict:
    """adapter_config.json of an adapter directory, its LoRA fields checked (for another type: that peft can merge
    it): one LinesError line per problem.

    Rank and scaling enter every update ΔW = (alpha/r)·B·A, so an absurd `r` (0, negative, not an integer) or
    alpha is refused here rather than found as a division by zero or a silently huge update later."""
    config_path = Path(path) / ADAPTER_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LinesError(f"{config_path}: unreadable adapter config ({exc})") from None
    if not isinstance(config, dict):
        raise LinesError(f"{config_path}: an adapter config is a JSON object, got {type(config).__name__}")
    if config.get("peft_type", "LORA") != "LORA":
        check_peft_merges(config, config_path)
        return config
    ranks = {"r": config.get("r", 1), **{f"rank_pattern[{k!r}]": v for k, v in _mapping(config, "rank_pattern",
                                                                                          config_path).items()}}
    for field, value in ranks.items():
        if type(value) is not int or value < 1:
            raise LinesError(f"{config_path}: {field} is {repr(value)[:40]}; a LoRA rank is an integer >= 1")
    alphas = {"lora_alpha": config.get("lora_alpha", 1), **{
        f"alpha_pattern[{k!r}]": v for k, v in _mapping(config, "alpha_pattern", config_path).items()}}
    for field, value in alphas.items():
        if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
            raise LinesError(f"{config_path}: {field} is {repr(value)[:40]}; LoRA alpha is a finite number > 0")
    targets = config.get("target_modules")
    if targets is not None and not isinstance(targets, str) and not (
            isinstance(targets, list) and all(isinstance(t, str) and t for t in targets)):
        raise LinesError(f"{config_path}: target_modules is {str(targets)[:60]}; give a list of module names or "
                         f"a regular expression")
    return config


def adapter_type(config: dict) -> str:
    """The adapter's kind in words: LoRA, DoRA (LoRA with use_dora), or peft's name of any other type."""
    peft_type = config.get("peft_type", "LORA")
    if peft_type == "LORA":
        return "DoRA" if config.get("use_dora") else "LoRA"
    return str(peft_type)


def is_linear_lora(config: dict) -> bool:
    """Whether the adapter's update is s·B·A, linear in each factor: then its soups are exact in adapter space. DoRA
    (a magnitude times the normalised W0 + s·B·A) and the other types peft merges are merged by peft itself."""
    return adapter_type(config) == "LoRA"


def check_peft_merges(config: dict, config_path: Path) -> None:
    """An adapter other than LoRA is a policy when peft can merge it into the weights (its merge_and_unload): one
    error naming the adapter type otherwise."""
    kind = adapter_type(config)
    try:
        # peft: a heavy dependency of the pipeline extra, needed only for adapters that peft itself must merge.
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    except ImportError:
        raise LinesError(f"{config_path}: a {kind} adapter is merged into θ0 by peft, which is not installed; "
                         "install peft (the pipeline extra)") from None
    if not isinstance(config.get("peft_type"), str) or kind not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise LinesError(f"{config_path}: peft_type {str(config.get('peft_type'))[:40]!r} is no adapter type peft "
                         "knows; a policy is a LoRA adapter, or an adapter peft can merge into the weights")
    if not hasattr(PEFT_TYPE_TO_TUNER_MAPPING.get(kind), "merge_and_unload"):
        raise LinesError(f"{config_path}: a {kind} adapter changes what the model is fed (virtual tokens or "
                         "prompts), not its weights, so peft cannot merge it into θ0 and it has no weights to merge; "
                         "a policy is a LoRA adapter, or an adapter peft can merge (DoRA, LoHa, LoKr, IA3, ...)")


def _mapping(config: dict, key: str, config_path: Path) -> dict:
    value = config.get(key) or {}
    if not isinstance(value, dict):
        raise LinesError(f"{config_path}: {key} is not a mapping of module patterns to values")
    return value


def max_adapter_rank(path: str | Path) -> int:
    """The largest rank an adapter declares (`r` and its rank_pattern), from its checked config."""
    config = read_adapter_config(path)
    return max([config.get("r", 1)] + list((config.get("rank_pattern") or {}).values()))


def missing_target_module(config: dict, module_names: set[str]) -> str | None:
    """The first of the config's `target_modules` that names no module of the model (PEFT's rule: a listed name
    matches a module whose name is it or ends with `.name`; a string is a regular expression matched in full), or
    None. "all-linear" is PEFT's keyword for every linear layer."""
    targets = config.get("target_modules")
    if targets is None or targets == "all-linear":
        return None
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error:
            return targets
        return None if any(pattern.fullmatch(m) for m in module_names) else targets
    for target in targets:
        if not any(m == target or m.endswith(f".{target}") for m in module_names):
            return target
    return None


def check_rank_fits(where: str, module: str, rank: int, in_features: int, out_features: int) -> None:
    """A rank above min(in, out) adds parameters but no expressiveness: the adapter was made for another model
    or its config is wrong."""
    if rank > min(in_features, out_features):
        raise LinesError(f"{where}: LoRA module {module!r} has rank {rank}, larger than its layer "
                         f"({in_features} -> {out_features}); the adapter does not fit this model")


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rule: a pattern key matches a module whose name ends with it (at a dot boundary)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


@dataclass
class LoraModule:
    """One adapted weight: the base tensor it updates and the factors of its update."""

    module: str  # module name, e.g. model.layers.0.self_attn.q_proj
    weight_name: str  # the base checkpoint's tensor, e.g. model.layers.0.self_attn.q_proj.weight
    A: torch.Tensor  # (r, in)
    B: torch.Tensor  # (out, r)
    scaling: float
    transposed: bool  # ΔW is stored transposed (Conv1D with fan_in_fan_out, embeddings)
    embedding: bool

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def delta(self, dtype: torch.dtype = torch.float32, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """ΔW (or rows of it) in the base tensor's layout: s·B·A, transposed where the layer stores it so."""
        A, B = self.A.to(dtype), self.B.to(dtype)
        if self.transposed:  # ΔW = (B·A)ᵀ = Aᵀ·Bᵀ; rows of ΔW are columns of A
            a = A if rows is None else A[:, rows[0]:rows[1]]
            return (a.T @ B.T) * self.scaling
        b = B if rows is None else B[rows[0]:rows[1]]
        return (b @ A) * self.scaling


class LoraAdapter:
    """A PEFT LoRA adapter read into memory (adapters are small), mapped onto its base checkpoint's names."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config: dict = read_adapter_config(self.path)
        weights = self.path / ADAPTER_WEIGHTS
        if not weights.is_file():
            raise LinesError(f"{self.path}: no {ADAPTER_WEIGHTS} (pickle adapter_model.bin is not supported; "
                             f"re-save with safe_serialization=True)")
        self.weights_file = weights
        read_safetensors_header(weights)  # rejects a corrupt or truncated file with a clear message
        state = load_file(weights)
        self.modules: dict[str, LoraModule] = {}
        self.full_tensors: dict[str, torch.Tensor] = {}  # modules_to_save, as whole base tensors
        self.base_copies: dict[str, torch.Tensor] = {}  # base layers PEFT saved beside embedding LoRA
        factors: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in state.items():
            name = key.removeprefix(PEFT_PREFIX)
            match = _LORA_KEY.match(name) or _EMBEDDING_KEY.match(name)
            if match:
                factors.setdefault(match.group("module"), {})[match.group("part")[-1]] = tensor
            elif ".base_layer." in name:
                self.base_copies[name.replace(".base_layer.", ".")] = tensor
            else:
                self.full_tensors[name] = tensor
        fan_in_fan_out = bool(self.config.get("fan_in_fan_out", False))
        rslora = bool(self.config.get("use_rslora", False))
        for module, parts in factors.items():
            if set(parts) != {"A", "B"}:
                raise LinesError(f"{weights}: module {module!r} has only lora_{''.join(parts)}; the file is incomplete")
            A, B = parts["A"], parts["B"]
            embedding = f"{PEFT_PREFIX}{module}.lora_embedding_A" in state
            # Embedding factors are A: (r, num_embeddings), B: (dim, r), so ΔW = (B·A)ᵀ as for Conv1D.
            if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1] or A.shape[0] < 1:
                raise LinesError(f"{weights}: module {module!r} has lora_A {list(A.shape)} and lora_B "
                                 f"{list(B.shape)}, which are not (r, in) and (out, r) with one rank r >= 1; "
                                 f"the adapter is corrupt")
            for part, tensor in parts.items():
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    raise LinesError(f"{weights}: tensor lora_{part} of module {module!r} has non-finite values "
                                     f"(NaN or inf); the adapter is corrupt (diverged training?)")
            rank = A.shape[0]
            declared = _pattern_value(self.config.get("rank_pattern") or {}, module, self.config.get("r", rank))
            if declared != rank:
                raise LinesError(f"{self.path / ADAPTER_CONFIG}: declares rank {declared} for module {module!r} but "
                                 f"its factors in {ADAPTER_WEIGHTS} have rank {rank}; the config and weights disagree")
            alpha = _pattern_value(self.config.get("alpha_pattern") or {}, module, self.config.get("lora_alpha", rank))
            scaling = alpha / math.sqrt(rank) if rslora else alpha / rank
            self.modules[f"{module}.weight"] = LoraModule(module, f"{module}.weight", A, B, scaling,
                                                          transposed=fan_in_fan_out or embedding, embedding=embedding)

    @property
    def base_model_name(self) -> str | None:
        return self.config.get("base_model_name_or_path")

    @property
    def modules_to_save(self) -> list[str]:
        return list(self.full_tensors)


class AdapterCheckpoint:
    """A LoRA policy seen as a full checkpoint θ_i = θ0 + ΔW_i, read tensor by tensor like `Checkpoint`.

    Adapted tensors are returned in fp32 (θ0 + ΔW in fp32), so the update is not rounded to θ0's dtype.
    """

    is_pickle = False

    def __init__(self, path: str | Path, base: Checkpoint):
        self.path = Path(path)
        self.adapter = LoraAdapter(path)
        self.base = base
        self.config = base.config
        self.tensors: dict[str, TensorInfo] = {}
        for name, info in base.tensors.items():
            self.tensors[name] = TensorInfo(name, info.dtype, info.shape, self.adapter.weights_file)
        self._check_against_base()

    def _check_against_base(self) -> None:
        where = self.adapter.weights_file
        for name, module in self.adapter.modules.items():
            if name not in self.base.tensors:
                raise LinesError(f"{where}: LoRA module {module.module!r} updates {name!r}, which the base model "
                                 f"{self.base.path} lacks; was the adapter trained on another base?")
            shape = self.base.tensors[name].shape
            out, inp = module.B.shape[0], module.A.shape[1]
            expected = (inp, out) if module.transposed else (out, inp)
            if tuple(shape) != expected:
                raise LinesError(f"{where}: LoRA module {module.module!r} makes a {list(expected)} update but the base "
                                 f"model's {name!r} is {list(shape)}; was the adapter trained on another base?")
            check_rank_fits(str(where), module.module, module.rank, inp, out)
        base_modules = {name.rpartition(".")[0] for name in self.base.tensors}
        missing = missing_target_module(self.adapter.config, base_modules)
        if missing is not None:
            raise LinesError(f"{self.path / ADAPTER_CONFIG}: target_modules names {missing!r}, which no module of the "
                             f"base model {self.base.path} matches; was the adapter trained on another architecture?")
        for name, tensor in {**self.adapter.full_tensors, **self.adapter.base_copies}.items():
            if name not in self.base.tensors:
                raise LinesError(f"{where}: saved module tensor {name!r} has no counterpart in the base model "
                                 f"{self.base.path}")
            if tuple(tensor.shape) != self.base.tensors[name].shape:
                raise LinesError(f"{where}: saved tensor {name!r} has shape {list(tensor.shape)}, the base model's "
                                 f"is {list(self.base.tensors[name].shape)}")
        for name, tensor in self.adapter.base_copies.items():
            if not torch.equal(tensor, self.base.read(name).to(tensor.dtype)):
                raise LinesError(f"{where}: the base layer saved with the adapter ({name!r}) differs from the base "
                                 f"model {self.base.path}; the adapter was trained on another base")

    def info(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def read(self, name: str, rows: tuple[int, int] | None = None) -> torch.Tensor:
        full = self.adapter.full_tensors.get(name)
        if full is not None:
            return full if rows is None else full[rows[0]:rows[1]]
        module = self.adapter.modules.get(name)
        if module is None:
            return self.base.read(name, rows)
        return self.base.read(name, rows).to(torch.float32) + module.delta(torch.float32, rows)

    def close(self) -> None:
        pass

    def weight_file_names(self) -> set[str]:
        return {ADAPTER_WEIGHTS}
