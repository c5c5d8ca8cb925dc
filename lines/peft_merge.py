"""Adapters whose update is not linear in their factors (DoRA, and the other types peft merges): θ_i by peft itself.

DoRA's weight is m·(W0 + s·B·A)/‖W0 + s·B·A‖ (column norms), so Σ_i c_i·ΔW_i is no function of concatenated
factors and no soup of such adapters is one adapter. The dense route stays exact: each adapter is merged into θ0 by
peft's own `merge_and_unload` (θ0 loaded in fp32), written once to a temporary directory, and read from there like any
full policy, so every merge method takes its task vector θ_i − θ0 tensor by tensor. One model is in memory while peft
merges it; the merge itself streams as always.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import Checkpoint
from .errors import LinesError
from .lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapter_type, read_adapter_config

MERGED_FILE = "model.safetensors"
MISSING_KEYS = "Found missing adapter keys"  # the start of peft's warning (PeftModel.from_pretrained)


class PeftMergedCheckpoint(Checkpoint):
    """An adapter directory read as the full policy peft's merge_and_unload makes of it on θ0."""

    def __init__(self, path: str | Path, base: Checkpoint):
        self.adapter_path = Path(path)
        self.adapter_config = read_adapter_config(path)
        self.kind = adapter_type(self.adapter_config)
        tmp = Path(tempfile.mkdtemp(prefix="lines-peft-merged-"))
        try:
            write_peft_merged(self.adapter_path, base, tmp)
            super().__init__(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.merged_dir = tmp
        self.path = self.adapter_path  # what messages and the model card name: the policy as the user gave it

    @property
    def base_model_name(self) -> str | None:
        return self.adapter_config.get("base_model_name_or_path")

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.merged_dir, ignore_errors=True)


def peft_merged_state(adapter: Path, base: Checkpoint) -> dict[str, torch.Tensor]:
    """peft's merge_and_unload of `adapter` on θ0 (loaded in fp32): the merged model's tensors under θ0's names."""
    # transformers and peft: heavy dependencies of the pipeline extra, needed only for adapters peft must merge.
    import transformers
    from peft import PeftModel  # heavy, optional: as above

    kind = adapter_type(read_adapter_config(adapter))
    architectures = base.config.get("architectures") or []
    model_class = getattr(transformers, architectures[0], None) if architectures else None
    if model_class is None:
        model_class = transformers.AutoModelForCausalLM
    try:
        model = model_class.from_pretrained(str(base.path), dtype=torch.float32, trust_remote_code=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            peft_model = PeftModel.from_pretrained(model, str(adapter))
        # peft only warns when the files lack weights of modules its config adapts; those would merge as initialised.
        missing = next((str(w.message) for w in caught if MISSING_KEYS in str(w.message)), None)
        if missing is not None:
            raise LinesError(f"{adapter / ADAPTER_WEIGHTS}: holds no weights for some modules its {kind} config adapts "
                             f"({' '.join(missing.split())[:200]}); the adapter's config and weights disagree")
        merged = peft_model.merge_and_unload()
    except LinesError:
        raise
    except Exception as exc:  # transformers and peft raise many types for files they cannot use
        message = " ".join(str(exc).split())[:300]
        raise LinesError(f"{adapter / ADAPTER_CONFIG}: peft cannot merge this {kind} adapter into θ0 ({base.path}): "
                         f"{type(exc).__name__}: {message}") from None
    state = merged.state_dict()
    prefix = getattr(merged, "base_model_prefix", "")
    out = {}
    for name in base.tensors:
        key = next((k for k in (name, f"{prefix}.{name}", name.removeprefix(f"{prefix}.")) if k in state), None)
        if key is None:
            raise LinesError(f"{adapter}: the model peft merged this {kind} adapter into has no tensor {name!r} of "
                             f"θ0 ({base.path}); θ0's checkpoint does not load as {model_class.__name__}")
        out[name] = state[key].detach().to("cpu").contiguous().clone()
    return out


def write_peft_merged(adapter: Path, base: Checkpoint, out_dir: Path) -> None:
    """θ0's config and peft's merged tensors in `out_dir`, a checkpoint directory."""
    save_file(peft_merged_state(adapter, base), str(out_dir / MERGED_FILE), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(base.config, indent=2) + "\n")
