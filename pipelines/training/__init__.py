"""The training stage: θ0 (given, or trained with SFT) and one policy per reward, plus a MORL baseline.

    from pipelines.training import load_config, train_all
    config = load_config("configs/train_demo.yaml", ["training.max_steps=5"])
    policies = train_all(config)        # {name: PolicyInfo(path, kind, checkpoint, base_path, manifest, ...)}

Outputs: runs/<run>/base/ (θ0 with tokenizer) + base_manifest.json, runs/<run>/policies/<name>/ (HF checkpoint
or PEFT adapter + manifest.json). `load_policy_infos(run_dir)` reads finished policies back from disk.
"""
from .base_model import BaseInfo, prepare_base
from .config import TrainConfig, load_config, parse_config, policy_settings
from .environment import check_environment
from .errors import TrainingError
from .manifest import PolicyInfo, load_policy_infos, read_manifest
from .run import train_all

__all__ = ["BaseInfo", "prepare_base", "TrainConfig", "load_config", "parse_config", "policy_settings",
           "check_environment", "TrainingError", "PolicyInfo", "load_policy_infos", "read_manifest", "train_all"]
