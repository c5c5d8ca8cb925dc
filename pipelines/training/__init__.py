"""The training stage: θ0 (given, or trained with SFT) and one policy per reward, plus a MORL baseline.

    from pipelines.training import load_config, train_all
    config = load_config("configs/train_demo.yaml", ["training.max_steps=5"])
    policies = train_all(config)        # {name: PolicyInfo(path, kind, checkpoint, base_path, manifest, ...)}

Outputs: runs/<run>/base/ (θ0 with tokenizer) + base_manifest.json, runs/<run>/policies/<name>/ (HF checkpoint
or PEFT adapter + manifest.json). `load_policy_infos(run_dir)` reads finished policies back from disk. The stage's
config schema is pipelines/config/training.py; `load_config` (pipelines/config/load.py) is named here too, as the
stage's entry point.

Names are imported on first use: the config package imports this package's modules (its checks use the trainers'
field checks), so importing the package itself must not pull the stage in.
"""
from __future__ import annotations

import importlib

_HOMES = {
    "BaseInfo": ".base_model", "prepare_base": ".base_model",
    "load_config": "pipelines.config.load",
    "TrainingError": ".errors",
    "PolicyInfo": ".manifest", "load_policy_infos": ".manifest", "read_manifest": ".manifest",
    "train_all": ".run",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value
