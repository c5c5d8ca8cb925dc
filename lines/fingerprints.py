"""Identities of content: stable hashes of settings and content fingerprints of files and checkpoints.

One scheme everywhere: policy manifests record θ0's fingerprint, the sweep's cache keys are built from the
fingerprints of θ0, the policies and every file a score depends on, so two records can always be compared.

- `stable_hash(obj)`: sha256 of canonical JSON (sorted keys), for settings; key order never matters.
- `fingerprint(path)`: "sha256:<hex>" of a file's bytes, or of a checkpoint directory's model files (weights,
  configs, tokenizer files; names and bytes, in name order). Where a directory lives does not matter, what
  it holds does. Memoised by (path, size, mtime, inode) in memory and, given `memo_file`, on disk, so a
  re-run does not read every weight file again.
"""
from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from .atomic import write_json
from .errors import UserError

# Files of a checkpoint directory that make the model: what `from_pretrained` (model, adapter or tokenizer) reads.
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja", ".tiktoken")
# Written beside a model by this project or by trainers; they do not change what the model computes.
NOT_MODEL_FILES = frozenset({"manifest.json", "training_args.bin", "trainer_state.json"})

_memo: dict[str, str] = {}
_memo_lock = threading.Lock()


RUN_MEMO = ".fingerprints.json"


def run_memo(run_dir: str | Path) -> Path:
    """Where a run memoises file digests (every stage of a run shares it), so a re-run hashes nothing again."""
    return Path(run_dir) / RUN_MEMO


def stable_hash(obj: Any, length: int = 24) -> str:
    """A short hex digest of JSON-serialisable settings (non-JSON values by their str)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def model_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES
                  and p.name not in NOT_MODEL_FILES)


def fingerprint(path: str | Path, memo_file: Path | None = None) -> str:
    """'sha256:<hex>' of a file, or of a checkpoint directory's model files; see the module docstring."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"'{path}' does not exist; cannot fingerprint it (check the path)")
    disk_memo = _read_memo(memo_file)
    if path.is_file():
        digest = _file_digest(path, disk_memo)
    else:
        files = model_files(path)
        if not files:
            raise UserError(f"'{path}' holds no model files ({', '.join(MODEL_FILE_SUFFIXES)}); give a checkpoint "
                            "directory saved with save_pretrained")
        digest = stable_hash([(f.name, _file_digest(f, disk_memo)) for f in files], length=64)
    if memo_file is not None and disk_memo.get("_changed"):
        disk_memo.pop("_changed")
        write_json(memo_file, disk_memo)
    return f"sha256:{digest}"


def _memo_token(file: Path) -> str:
    stat = file.stat()
    return f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"


def _file_digest(file: Path, disk_memo: dict) -> str:
    token = _memo_token(file)
    with _memo_lock:
        known = _memo.get(token) or disk_memo.get(token)
    if known is None:
        h = hashlib.sha256()
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 24):
                h.update(chunk)
        known = h.hexdigest()
        disk_memo[token], disk_memo["_changed"] = known, True
    with _memo_lock:
        _memo[token] = known
    return known


def _read_memo(memo_file: Path | None) -> dict:
    """The on-disk memo; one that cannot be read (another process replacing it, a damaged file) is ignored:
    it only saves time, a digest is recomputed rather than trusted from a bad file."""
    if memo_file is None or not memo_file.is_file():
        return {}
    try:
        data = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
