"""Identities that decide whether finished work can be reused: θ0's content hash and config hashes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors",)


def checkpoint_fingerprint(path: str | Path) -> str:
    """sha256 over a checkpoint's safetensors files (names and bytes, in name order): 'sha256:<hex>'.

    Two θ0 directories with the same weights get the same fingerprint wherever they live, so a policy's
    manifest proves which θ0 its task vector is relative to.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors files to fingerprint")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256:" + digest.hexdigest()


def config_hash(payload: Any) -> str:
    """A short stable hash of JSON-serialisable settings (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
