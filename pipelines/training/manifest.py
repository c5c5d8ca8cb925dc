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


def retrain_reason(manifest: dict | None, wanted_inputs: dict, policy_dir: Path) -> str:
    """One line saying why a policy is trained rather than reused: what differs from the finished one on disk."""
    if manifest is None:
        return f"no finished policy at {policy_dir}"
    if manifest.get("status") != "complete":
        return f"the policy at {policy_dir} is not complete"
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"the policy at {policy_dir} has format {manifest.get('format_version')}, this version writes " \
               f"{FORMAT_VERSION}"
    previous = manifest.get("hash_inputs")
    if not isinstance(previous, dict):
        return f"the config hash of {policy_dir} differs (its manifest does not record what it was computed from)"
    changed = [key for key in sorted(set(previous) | set(wanted_inputs)) if previous.get(key) != wanted_inputs.get(key)]
    if changed == ["processes"]:
        return f"the process count changed ({previous['processes']} → {wanted_inputs['processes']}), and with it the " \
               "global batch; state training.global_batch_size to keep one experiment on any process count"
    details = [f"{key} ({_short(previous.get(key))} → {_short(wanted_inputs.get(key))})" if key != "training" else
               "training settings (" + ", ".join(_changed_fields(previous.get(key) or {}, wanted_inputs.get(key) or {}))
               + ")" for key in changed]
    return "changed since it was trained: " + "; ".join(details)


def _changed_fields(before: dict, after: dict) -> list[str]:
    return [f"{k}: {_short(before.get(k))} → {_short(after.get(k))}" for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)]


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


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
