"""θ0 and the policies opened together, checked against each other, and read as per-tensor task vectors."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import Checkpoint
from .errors import LinesError
from .layer_map import LayerMap, ParamRole
from .lora import AdapterCheckpoint, is_adapter_dir, is_linear_lora, read_adapter_config
from .peft_merge import PeftMergedCheckpoint

COMPUTE_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def all_finite(tensor: torch.Tensor) -> bool:
    """Exact and cheap: a sum is finite iff every element is, unless finite values overflow the sum, which
    only the (slower) elementwise check can tell apart."""
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())


def non_finite_error(checkpoint: Checkpoint, name: str) -> LinesError:
    return LinesError(f"{checkpoint.tensors[name].file}: tensor {name!r} has non-finite values (NaN or inf); "
                      f"fix or re-export that checkpoint")


class MergeInputs:
    """θ0 and N policies as Hugging Face directories, validated to be the same architecture and layout."""

    def __init__(self, base: str | Path, policies: list[str | Path], allow_pickle: bool = False):
        if not policies:
            raise LinesError("a merge needs at least one policy besides the base model")
        self.base = Checkpoint(base, allow_pickle)
        self.policies: list[Checkpoint | AdapterCheckpoint | PeftMergedCheckpoint] = []
        try:  # closed on failure: a policy peft merged holds a temporary directory
            for path in policies:
                self.policies.append(self._open_policy(path, allow_pickle))
            self._check_adapters_share_a_base()
            self.layer_map = LayerMap.from_config(self.base.config, str(self.base.path / "config.json"))
            for policy in self.policies:
                self._check_same_layout(policy)
            # θ0's storage order: reading each file front to back keeps I/O sequential.
            self.names = sorted(self.base.tensors, key=lambda n: (str(self.base.tensors[n].file),
                                                                   self.base.tensors[n].offset))
            self.roles: dict[str, ParamRole] = {}
            for name in self.names:
                try:
                    self.roles[name] = self.layer_map.role(name)
                except LinesError as exc:
                    raise LinesError(f"{self.base.tensors[name].file}: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _open_policy(self, path: str | Path, allow_pickle: bool
                     ) -> Checkpoint | AdapterCheckpoint | PeftMergedCheckpoint:
        """A LoRA adapter directory is a policy too, read as θ0 + ΔW exactly; an adapter whose update is not linear
        in its factors (DoRA, other peft types) is θ0 as peft's merge_and_unload leaves it."""
        if not is_adapter_dir(path):
            return Checkpoint(path, allow_pickle)
        if is_linear_lora(read_adapter_config(path)):
            return AdapterCheckpoint(path, self.base)
        return PeftMergedCheckpoint(path, self.base)

    @property
    def peft_merged(self) -> list[PeftMergedCheckpoint]:
        """The policies peft merged into θ0 (adapters whose update is not linear in their factors)."""
        return [p for p in self.policies if isinstance(p, PeftMergedCheckpoint)]

    @property
    def adapters(self) -> list[AdapterCheckpoint]:
        return [p for p in self.policies if isinstance(p, AdapterCheckpoint)]

    def _check_adapters_share_a_base(self) -> None:
        named = {a.adapter.base_model_name: a.path for a in self.adapters if a.adapter.base_model_name}
        for merged in self.peft_merged:
            if merged.base_model_name:
                named.setdefault(merged.base_model_name, merged.adapter_path)
        if len(named) > 1:
            (n1, a1), (n2, a2) = list(named.items())[:2]
            raise LinesError(f"{a2}: adapter trained on base {n2!r}, but {a1} on {n1!r}; adapters of one "
                             f"soup must share θ0")

    @property
    def num_layers(self) -> int:
        return self.layer_map.num_layers

    def _check_same_layout(self, policy: Checkpoint | AdapterCheckpoint) -> None:
        base = self.base
        where = f"{policy.path}"
        if policy.config.get("model_type") != base.config.get("model_type"):
            raise LinesError(f"{where}: model_type {policy.config.get('model_type')!r} differs from the base "
                             f"model's {base.config.get('model_type')!r}; all policies must share θ0's architecture")
        policy_layers = LayerMap.from_config(policy.config, str(policy.path / "config.json")).num_layers
        if policy_layers != self.layer_map.num_layers:
            raise LinesError(f"{where}: {policy_layers} layers, but the base model has "
                             f"{self.layer_map.num_layers}; policies must be fine-tuned from the same θ0")
        missing = sorted(set(base.tensors) - set(policy.tensors))
        if missing:
            raise LinesError(f"{where}: missing tensor {missing[0]!r} that the base model has"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        extra = sorted(set(policy.tensors) - set(base.tensors))
        if extra:
            raise LinesError(f"{policy.tensors[extra[0]].file}: extra tensor {extra[0]!r} that the base model "
                             f"lacks" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))
        for name, info in policy.tensors.items():
            base_shape = base.tensors[name].shape
            if info.shape != base_shape:
                raise LinesError(f"{info.file}: tensor {name!r} has shape {list(info.shape)}, the base model "
                                 f"has {list(base_shape)}")
            if info.dtype.is_floating_point != base.tensors[name].dtype.is_floating_point:
                raise LinesError(f"{info.file}: tensor {name!r} is {info.dtype}, the base model's is "
                                 f"{base.tensors[name].dtype}")

    def read_block(self, name: str, rows: tuple[int, int] | None = None) -> list[torch.Tensor]:
        """(Rows of) tensor `name` from θ0 and then every policy, in their stored dtypes."""
        return [checkpoint.read(name, rows) for checkpoint in [self.base, *self.policies]]

    def raise_for_non_finite(self, name: str, raw: list[torch.Tensor]) -> None:
        """Called when a merged block is not finite: name the input file at fault (or report overflow)."""
        for checkpoint, tensor in zip([self.base, *self.policies], raw):
            if not torch.isfinite(tensor).all():
                raise non_finite_error(checkpoint, name)
        raise LinesError(f"tensor {name!r}: the merged values overflow (inf) although every input is finite; "
                         f"use smaller weights or compute_dtype: float64")

    def linear_combination(self, name: str, raw: list[torch.Tensor], dtype: torch.dtype,
                           base_coefficient: float, coefficients: list[float]) -> torch.Tensor:
        """c0·θ0 + Σ_i c_i·θ_i from a block read by `read_block`, accumulated in `dtype`, one pass per input."""
        out = raw[0].to(dtype, copy=True)  # raw[0] must stay intact for error reporting
        out.mul_(base_coefficient)
        for coefficient, tensor in zip(coefficients, raw[1:]):
            out.add_(tensor, alpha=coefficient)
        if not all_finite(out):
            self.raise_for_non_finite(name, raw)
        return out

    def task_vectors(self, name: str, raw: list[torch.Tensor], dtype: torch.dtype
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """θ0 and the stacked task vectors τ_i = θ_i − θ0 from a block read by `read_block`."""
        base = raw[0].to(dtype)
        tvs = torch.stack([tensor.to(dtype) - base for tensor in raw[1:]])
        if not all_finite(tvs) or not all_finite(base):
            self.raise_for_non_finite(name, raw)
        return base, tvs

    def identical_non_float(self, name: str, raw: list[torch.Tensor]) -> torch.Tensor:
        """Integer/bool tensors (masks, position ids) are not merged: they must be identical everywhere."""
        base = raw[0]
        for policy, tensor in zip(self.policies, raw[1:]):
            if not torch.equal(tensor, base):
                raise LinesError(f"{policy.tensors[name].file}: non-floating tensor {name!r} differs from the "
                                 f"base model's; integer buffers cannot be merged")
        return base

    def close(self) -> None:
        for checkpoint in [self.base, *self.policies]:
            checkpoint.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
