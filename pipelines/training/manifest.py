"""Policy manifests (runs/<name>/policies/<policy>/manifest.json) and the `PolicyInfo` the sweep consumes.

A manifest is written last, after weights and evaluation, and the directory is renamed into place after
it: a policy directory whose manifest says `"status": "complete"` is finished. The config hash in it
decides reuse on resume.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lines.lora import is_adapter_dir

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: summaries over prompts (per-prompt means, paired differences)


@dataclass
class PolicyInfo:
    """One policy as the merge/sweep stage needs it."""

    name: str                               # policies/<name>; the reward's name (or the MORL policy's)
    reward: str | dict                      # the reward it was trained on (MORL: {name: weight})
    path: Path                              # what to load: a full checkpoint or a PEFT adapter directory
    kind: Literal["full", "lora"]
    checkpoint: Path | None                 # a full HF checkpoint of the policy (for lines.merge), if any
    base_path: Path                         # θ0
    base_fingerprint: str
    source: Literal["trained", "loaded"]
    manifest: dict = field(default_factory=dict)
    reused: bool = False

    @property
    def evaluation(self) -> dict:
        return self.manifest.get("evaluation", {})


def read_manifest(policy_dir: Path) -> dict | None:
    path = Path(policy_dir) / MANIFEST
    try:
        data = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(manifest: dict | None, wanted_hash: str) -> bool:
    return bool(manifest and manifest.get("status") == "complete" and manifest.get("config_hash") == wanted_hash
                and manifest.get("format_version") == FORMAT_VERSION)


def info_from_manifest(policy_dir: Path, manifest: dict, reused: bool = False) -> PolicyInfo:
    """PolicyInfo of a finished policy directory (trained here, or a loaded policy's record)."""
    policy_dir = Path(policy_dir)
    if manifest.get("source") == "loaded":
        path = Path(manifest["path"])
        checkpoint = path if manifest["kind"] == "full" else None
    else:  # trained here: paths are relative to the policy directory, so a run directory can be moved
        path = policy_dir
        checkpoint = policy_dir if manifest["kind"] == "full" else (
            policy_dir / "merged" if (policy_dir / "merged" / "config.json").is_file() else None)
    return PolicyInfo(name=manifest["name"], reward=manifest["reward"], path=path, kind=manifest["kind"],
                      checkpoint=checkpoint, base_path=Path(manifest["base"]["path"]),
                      base_fingerprint=manifest["base"]["fingerprint"], source=manifest["source"], manifest=manifest,
                      reused=reused)


def policy_kind(path: Path) -> Literal["full", "lora"]:
    return "lora" if is_adapter_dir(path) else "full"


def load_policy_infos(run_dir: str | Path) -> dict[str, PolicyInfo]:
    """Every finished policy of a run, read back from disk (for stages that run on their own)."""
    out = {}
    policies = Path(run_dir) / "policies"
    for policy_dir in sorted(p for p in policies.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if policies.is_dir() else []:
        manifest = read_manifest(policy_dir)
        if manifest and manifest.get("status") == "complete":
            out[manifest["name"]] = info_from_manifest(policy_dir, manifest, reused=True)
    return out
