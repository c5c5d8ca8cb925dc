"""θ0 and the policies opened together, checked against each other, and read as per-tensor task vectors."""
from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import Checkpoint
from .errors import LinesError
from .layer_map import LayerMap, ParamRole

COMPUTE_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MergeInputs:
    """θ0 and N policies as Hugging Face directories, validated to be the same architecture and layout."""

    def __init__(self, base: str | Path, policies: list[str | Path], allow_pickle: bool = False):
        if not policies:
            raise LinesError("a merge needs at least one policy besides the base model")
        self.base = Checkpoint(base, allow_pickle)
        self.policies = [Checkpoint(p, allow_pickle) for p in policies]
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

    @property
    def num_layers(self) -> int:
        return self.layer_map.num_layers

    def _check_same_layout(self, policy: Checkpoint) -> None:
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

    def read_checked(self, checkpoint: Checkpoint, name: str, rows: tuple[int, int] | None,
                     dtype: torch.dtype) -> torch.Tensor:
        tensor = checkpoint.read(name, rows).to(dtype)
        if not torch.isfinite(tensor).all():
            raise LinesError(f"{checkpoint.tensors[name].file}: tensor {name!r} has non-finite values "
                             f"(NaN or inf); fix or re-export that checkpoint")
        return tensor

    def base_and_task_vectors(self, name: str, rows: tuple[int, int] | None,
                              dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """θ0 (rows of) tensor `name` and the stacked task vectors τ_i = θ_i − θ0, in `dtype`."""
        base = self.read_checked(self.base, name, rows, dtype)
        tvs = torch.stack([self.read_checked(p, name, rows, dtype) - base for p in self.policies])
        return base, tvs

    def read_non_float(self, name: str) -> torch.Tensor:
        """Integer/bool tensors (masks, position ids) are not merged: they must be identical everywhere."""
        base = self.base.read(name)
        for policy in self.policies:
            if not torch.equal(policy.read(name), base):
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
