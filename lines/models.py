"""Loading Hugging Face models as a config asks: local directory or hub id, on the right device, in the right dtype.

Every stage that loads a causal LM (θ0 for KL and perplexity, the generation model, policies for evaluation)
goes through `load_causal_lm`, so `device: auto` and `dtype: auto` mean the same everywhere: this process's
GPU (its local rank under `accelerate launch`) in bf16 where the GPU supports it, else the CPU in fp32.
transformers and peft are imported only when a model is loaded (the merge engine itself does not need them).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .errors import LinesError, first_line
from .lora import is_adapter_dir

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float64": torch.float64}


def resolve_device(name: str = "auto") -> torch.device:
    """'auto': this process's GPU (LOCAL_RANK under a launcher), else the CPU; or an explicit 'cpu', 'cuda:1'."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LinesError(f"device '{name}' is not a device name; use auto, cpu or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LinesError(f"device '{name}' was asked for but CUDA is not available here; use device: auto or cpu")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bfloat16 on a GPU that supports it (the usual serving dtype), float32 elsewhere."""
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise LinesError(f"dtype '{name}' is not known; use one of auto, {', '.join(DTYPES)}")
    return DTYPES[name]


def looks_like_hub_id(text: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything path-like (./x, /x, ~/x, a/b/c) or existing is local."""
    return not text.startswith((".", "/", "~")) and text.count("/") <= 1 and not Path(text).expanduser().exists()


MISSING_LOCAL = "does not exist; fix the path (relative paths are read from the directory the job is started in)"
MISSING_OFFLINE = ("is not a local path, and as a hub id it is not in the hub cache while the hub is offline "
                   "(HF_HUB_OFFLINE=1); download it first or fix the path")


def hub_id_problem(repo_id: str) -> str | None:
    """Why `repo_id` cannot be a hub id (huggingface_hub's own rule), or None when it is well formed."""
    # deferred: huggingface_hub comes with transformers, an optional dependency of lines (only hub ids need it)
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        return first_line(err)
    return None


def first_missing_path(models: list[tuple[str, str | None]], files: list[tuple[str, str | None]],
                       hub_ids: str = "reachable") -> str | None:
    """"<where>: '<path>' <what is wrong and how to fix it>" for the first path that cannot be read, or None. A
    checkpoint is a local directory or a hub id: a well-formed one which, with `hub_ids="reachable"` and the hub
    offline, must be in the hub cache (`"well_formed"`: checking a config for another machine, where it will be
    fetched). A data file is always local. Entries without a path are skipped."""
    for where, path in models:
        if path and not Path(path).expanduser().exists():
            if not looks_like_hub_id(path):
                return f"{where}: '{path}' {MISSING_LOCAL}"
            problem = hub_id_problem(path)
            if problem:
                return f"{where}: '{path}' is neither a local path nor a hub id ({problem}); fix the path"
            if hub_ids == "reachable" and not hub_reachable(path):
                return f"{where}: '{path}' {MISSING_OFFLINE}"
    for where, path in files:
        if path and not Path(path).expanduser().exists():
            return f"{where}: '{path}' {MISSING_LOCAL}"
    return None


def hub_reachable(repo_id: str) -> bool:
    """Whether a hub id can be loaded here: the hub is online (the fetch itself says more), or the id is in the
    hub cache (a model or an adapter)."""
    # deferred: huggingface_hub comes with transformers, an optional dependency of lines (only hub ids need it)
    from huggingface_hub import constants, try_to_load_from_cache

    if not constants.HF_HUB_OFFLINE:
        return True
    try:
        return any(isinstance(try_to_load_from_cache(repo_id, name), str)
                   for name in ("config.json", "adapter_config.json"))
    except Exception:  # an id the cache cannot even look up (bad characters) is not reachable
        return False


def resolve_local(path_or_id: str | Path, what: str) -> Path:
    """A local directory for `path_or_id`: the directory itself, or a hub snapshot (downloaded once into the hub
    cache, for users with hub access). Without hub access a hub id is one clear error, not connection retries."""
    text = str(path_or_id)
    local = Path(text).expanduser()
    if local.is_dir():
        return local
    if not looks_like_hub_id(text):
        raise LinesError(f"{what} '{text}' does not exist; give a local checkpoint directory or a hub id like org/name")
    try:
        # deferred: huggingface_hub comes with transformers, an optional dependency of lines (only hub ids need it)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                             "*.jinja", "tokenizer*"]))
    except Exception as err:  # offline mode, unknown repo, no network: all mean "cannot use this id here"
        raise LinesError(f"{what} '{text}' is not a local directory and could not be fetched from the hub "
                         f"({first_line(err)}); download it first and give the local path") from None


REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json")


def refuse_remote_code(directory: str | Path, what: str, trust_remote_code: bool = False) -> None:
    """A checkpoint whose config.json or tokenizer_config.json maps its classes to code shipped beside it
    (`auto_map`) is refused unless the user set trust_remote_code: that code would run in this process. Without
    this check transformers quietly loads its own class for a known model_type instead: a different model."""
    if trust_remote_code:
        return
    for name in REMOTE_CODE_FILES:
        file = Path(directory) / name
        if not file.is_file():
            continue
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # unreadable configs are reported by the loader itself
        if isinstance(data, dict) and data.get("auto_map"):
            raise LinesError(f"{what}: {file} maps its classes to custom code (auto_map), which would run here; "
                             "this project runs a checkpoint's own code only where a config sets "
                             "trust_remote_code: true (reward models), so use a checkpoint without auto_map")


PICKLE_WEIGHT_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt")


def refuse_pickle_only(directory: str | Path, what: str) -> None:
    """Pickle weights can run code when loaded. Models load from safetensors only; a directory holding nothing
    else is one line saying how to convert it (the merge engine reads pickles only with --allow-pickle)."""
    directory = Path(directory)
    if any(directory.glob("*.safetensors")):
        return
    pickles = sorted(p.name for pattern in PICKLE_WEIGHT_PATTERNS for p in directory.glob(pattern))
    if pickles:
        raise LinesError(f"{what}: {directory} holds pickle weights only ({pickles[0]}), which can run code when "
                         "loaded; convert them to safetensors (save_pretrained(safe_serialization=True)) first")


def load_causal_lm(path: str | Path, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
                   what: str = "model"):
    """A causal LM in eval mode on `device` in `dtype` (names as in configs, or torch objects)."""
    # deferred: transformers is heavy and optional for lines; only loading a model needs it
    from transformers import AutoModelForCausalLM

    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, torch_device)
    local = resolve_local(path, what)
    refuse_remote_code(local, what)
    refuse_pickle_only(local, what)
    try:
        # A checkpoint's own modelling code (config.json auto_map) never runs: transformers refuses it unless
        # trust_remote_code, which no project config sets for policies (only reward models may, see reward_models).
        # use_safetensors: never a fall-back to pickle weights beside the safetensors ones.
        model = AutoModelForCausalLM.from_pretrained(str(local), dtype=torch_dtype, trust_remote_code=False,
                                                     use_safetensors=True)
    except (OSError, ValueError) as err:
        raise LinesError(f"{what}: cannot load '{path}' ({first_line(err)}); give a checkpoint directory") from None
    return model.to(torch_device).eval()


def load_policy_model(policy: str | Path, base: str | Path, device: str | torch.device = "auto",
                      dtype: str | torch.dtype = "auto", what: str = "policy"):
    """A policy as a plain causal LM: a full checkpoint as it is, a LoRA adapter folded into θ0 (θ0 + B·A)."""
    if not is_adapter_dir(policy):
        return load_causal_lm(policy, device, dtype, what)
    # deferred: peft is heavy and optional for lines; only folding a LoRA policy into θ0 needs it
    from peft import PeftModel

    # Folded on the CPU in fp32 (exact B·A), then moved and cast like any other model.
    model = PeftModel.from_pretrained(load_causal_lm(base, "cpu", "float32", f"{what} base"), str(policy))
    merged = model.merge_and_unload()
    torch_device = device if isinstance(device, torch.device) else resolve_device(device)
    torch_dtype = dtype if isinstance(dtype, torch.dtype) else resolve_dtype(dtype, torch_device)
    return merged.to(torch_device, torch_dtype).eval()
