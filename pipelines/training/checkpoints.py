"""Finding and loading checkpoints: local directories, hub ids (for users who have the hub), PEFT adapters."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from reward_models.tokenizer_setup import ensure_pad_token

from .errors import TrainingError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def looks_like_hub_id(text: str) -> bool:
    return not text.startswith((".", "/", "~")) and text.count("/") == 1 and not Path(text).exists()


def resolve_local(path_or_id: str, what: str) -> Path:
    """A local directory for `path_or_id`: the directory itself, or a hub snapshot (downloaded once into the
    hub cache). Without hub access a hub id is one clear error, not a stack of connection retries."""
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        return local
    if not looks_like_hub_id(path_or_id):
        raise TrainingError(f"{what} '{path_or_id}' does not exist; give a local checkpoint directory or a hub id "
                            "like org/name")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                                   "*.jinja", "tokenizer*"]))
    except Exception as err:  # offline mode, unknown repo, no network: all mean "cannot use this id here"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainingError(f"{what} '{path_or_id}' is not a local directory and could not be fetched from the hub "
                            f"({first}); download it first and give the local path") from None


def load_tokenizer(path: str | Path, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    ensure_pad_token(tokenizer, None)
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)


def load_policy_model(policy: str | Path, base: str | Path, device: torch.device | str = "cpu"):
    """A policy as a plain causal LM: a full checkpoint as is, an adapter folded into θ0 (θ0 + B·A)."""
    if is_adapter(policy):
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_causal_lm(base, "cpu"), str(policy))
        return model.merge_and_unload().to(device)
    return load_causal_lm(policy, device)


def adapter_base_path(adapter: str | Path) -> str | None:
    return json.loads((Path(adapter) / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
