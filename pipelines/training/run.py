"""The training stage end to end: θ0, then one policy per reward (and the MORL baseline), each reused
when a finished policy with the same config hash is already on disk.

    from pipelines.training import load_config, train_all
    policies = train_all(load_config("configs/train_demo.yaml"))   # {name: PolicyInfo}

Order of work, so that bad input fails before anything expensive: schema and references (load_config),
machine checks (precision, PPO), loaded policies' paths, θ0, loaded policies against θ0, then training.
"""
from __future__ import annotations

import importlib.metadata as md
import json
import logging
import shutil
import time
from pathlib import Path

import yaml

from lines.atomic import mapped_write_errors, replace_directory, temporary_directory_beside, write_json, write_text
from lines.fingerprints import fingerprint, run_memo, stable_hash
from lines.models import load_causal_lm, load_policy_model
from reward_models import Reward

from ..config.checks import check_environment
from ..config.training import MorlSpec, PolicyEntry, PolicyTraining, TrainConfig, policy_settings
from ..distributed import device, is_main_process, on_main, process_state
from ..distributed import describe as describe_distribution
from ..summary import summarize
from .base_model import BaseInfo, prepare_base
from .batching import for_processes
from .checkpoints import load_tokenizer
from .dpo import train_dpo
from ..stage_times import timed
from .evaluation import compare_summaries
from .evaluation import evaluate_model as _evaluate_model
from .jobs import PolicyJob
from .loaded import resolve_loaded, validate_against_base
from .manifest import (FORMAT_VERSION, MANIFEST, PolicyInfo, info_from_manifest, is_complete, policy_kind,
                       read_manifest, retrain_reason)
from .online_rl import train_online
from .ppo import IMPLEMENTATION as PPO_IMPLEMENTATION, train_ppo
from .prompt_sources import training_prompts
from .rewards import WeightedSum, build_reward_table, check_trainable

log = logging.getLogger(__name__)
BASE_EVAL = "base_eval.json"


def evaluate_model(*args, **kwargs) -> dict:
    """θ0 and each policy on the held-out prompts (timed as one stage)."""
    with timed("training stage: evaluation of θ0 and the policies"):
        return _evaluate_model(*args, **kwargs)


def train_all(config: TrainConfig) -> dict[str, PolicyInfo]:
    """Every policy of the config, trained or reused or loaded; keyed by policy name."""
    check_environment(config)
    run_dir = config.run_dir
    loaded = {entry.reward: resolve_loaded(entry.path, f"{config.source}: policy '{entry.reward}'")
              for entry in config.policies if entry.path is not None}
    on_main(lambda: write_text(run_dir / "train_config.yaml",
                               yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)),
            "writing train_config.yaml")

    base = prepare_base(config)
    for name, path in loaded.items():
        validate_against_base(path, base.path, f"{config.source}: policy '{name}'")

    tokenizer = load_tokenizer(base.path)
    # θ0 is loaded for evaluation only and released before each trainer starts (trainers load their own copies);
    # a `kl` reward without its own `base` keeps it, since it scores against θ0.
    needs_base = any(spec.wants_base_model() for spec in config.rewards)
    rewards = build_reward_table(config.rewards, base_model=load_causal_lm(base.path, device()) if needs_base else None)
    train_prompts, held_out = training_prompts(config.prompts)
    base_eval = evaluate_base(config, base, tokenizer, rewards, held_out)

    results: dict[str, PolicyInfo] = {}
    for entry, settings in policy_settings(config):
        if isinstance(entry, PolicyEntry) and entry.path is not None:
            info = record_loaded(config, entry, loaded[entry.reward], base, tokenizer, rewards, held_out, base_eval)
        else:
            info = train_policy(config, entry, settings, base, tokenizer, rewards, train_prompts, held_out, base_eval)
        results[info.name] = info
    # runs/<name>/work/ is the training stage's scratch (θ0's SFT, each policy's, θ0's DPO samples shared by the
    # policies): kept while the stage may be resumed, gone once every policy is finished.
    on_main(lambda: shutil.rmtree(run_dir / "work", ignore_errors=True), "removing the training stage's scratch")
    return results


# -- θ0's numbers, computed once per run ------------------------------------------------------------------------

def evaluate_base(config: TrainConfig, base: BaseInfo, tokenizer, rewards: dict[str, Reward], held_out) -> dict:
    wanted = stable_hash({"base": base.fingerprint, "evaluation": config.evaluation.model_dump(),
                          "prompts": config.prompts.model_dump(), "rewards": config.reward_identities()})
    path = config.run_dir / BASE_EVAL
    # The main process decides for all: processes deciding on their own could part ways (one reusing, one
    # evaluating) and wait for each other for ever.
    fresh = on_main(lambda: (_read_json(path) or {}).get("config_hash") == wanted, f"reading {BASE_EVAL}")
    if fresh:
        return _read_json(path)
    result = evaluate_model(load_causal_lm(base.path, device()), tokenizer, held_out, config.evaluation, rewards,
                            config.run_dir, "base_eval")
    result["config_hash"] = wanted
    # One writer (the main process), and the others return only once the file is in place.
    on_main(lambda: write_json(path, result), f"writing {BASE_EVAL}")
    return result


# -- one trained policy ------------------------------------------------------------------------------------------

def policy_hash_inputs(config: TrainConfig, name: str, signal: dict, settings: PolicyTraining,
                       base: BaseInfo) -> dict:
    """What a trained policy depends on; its hash decides reuse. The process count belongs to it only when the
    config states the batch per device (then the global batch grows with the processes): a stated
    `global_batch_size` makes the experiment the same on any process count."""
    inputs = {"format": FORMAT_VERSION, "name": name, "signal": signal, "training": settings.model_dump(),
              "prompts": config.prompts.model_dump(), "evaluation": config.evaluation.model_dump(),
              "rewards": config.reward_identities(), "base": base.fingerprint, "seed": config.seed}
    if settings.global_batch_size is None:
        inputs["processes"] = process_state().num_processes
    if settings.algorithm == "ppo":  # policies of another PPO implementation are not reused
        inputs["implementation"] = PPO_IMPLEMENTATION
    return inputs


def policy_hash(config: TrainConfig, name: str, signal: dict, settings: PolicyTraining, base: BaseInfo) -> str:
    return stable_hash(policy_hash_inputs(config, name, signal, settings, base))


def training_signal(entry: PolicyEntry | MorlSpec, rewards: dict[str, Reward], base_eval: dict,
                    where: str) -> tuple[str, Reward, dict]:
    """(policy name, the reward it is trained on, a JSON description of that reward)."""
    if isinstance(entry, MorlSpec):
        components = {name: rewards[name] for name in entry.weights}
        for reward in components.values():
            check_trainable(reward, where)
        signal = WeightedSum(entry.name, components, entry.weights, entry.normalize)
        # z-score statistics from θ0's held-out samples: the scale the soups start from.
        examples = base_eval["rows"]
        signal.fit([r["prompt"] for r in examples], [r["response"] for r in examples])
        return entry.name, signal, {"morl": signal.describe()}
    reward = rewards[entry.reward]
    check_trainable(reward, where)
    return entry.reward, reward, {"reward": entry.reward}


def train_policy(config: TrainConfig, entry, settings: PolicyTraining, base: BaseInfo, tokenizer,
                 rewards: dict[str, Reward], train_prompts, held_out, base_eval: dict) -> PolicyInfo:
    where = f"{config.source}: policy '{getattr(entry, 'reward', None) or entry.name}'"
    name, signal, signal_record = training_signal(entry, rewards, base_eval, where)
    policies_dir = config.run_dir / "policies"
    final_dir = policies_dir / name
    hash_inputs = policy_hash_inputs(config, name, signal_record, settings, base)
    wanted = stable_hash(hash_inputs)
    existing = read_manifest(final_dir)
    if is_complete(existing, wanted):
        log.info("policy '%s': reusing %s (same config hash %s)", name, final_dir, wanted)
        return info_from_manifest(final_dir, existing, reused=True)
    if is_main_process():
        log.info("policy '%s': training: %s", name, retrain_reason(existing, hash_inputs, final_dir))
    settings = for_processes(settings, process_state().num_processes, where)

    start = time.time()
    tmp_dir, work_dir = policies_dir / f".{name}.tmp", config.run_dir / "work" / name
    log_dir = config.run_dir / "logs" / name  # the trainer's logs (TensorBoard), of this training only

    def start_over() -> None:
        for stale in (tmp_dir, work_dir, log_dir):
            shutil.rmtree(stale, ignore_errors=True)
        tmp_dir.parent.mkdir(parents=True, exist_ok=True)
        work_dir.mkdir(parents=True, exist_ok=True)

    on_main(start_over, f"clearing what an earlier attempt at '{name}' left")
    seed = settings.seed if settings.seed is not None else config.seed
    job = PolicyJob(name, signal, settings, seed, where, base.path, train_prompts, work_dir, log_dir)
    trainer = {"dpo": train_dpo, "ppo": train_ppo}.get(settings.algorithm, train_online)
    with mapped_write_errors(tmp_dir):  # the trainer's checkpoints and the policy's files
        outcome = trainer(job, tmp_dir)

    kind = policy_kind(tmp_dir)
    if kind == "lora" and settings.lora is not None and settings.lora.save_merged:
        on_main(lambda: save_merged_lora(tmp_dir, base.path, tokenizer), f"saving the merged copy of '{name}'")
    # The training signal is scored too: for MORL that is the weighted objective itself.
    evaluation = evaluate_model(load_policy_model(tmp_dir, base.path, device()), tokenizer, held_out,
                                config.evaluation, {**rewards, name: signal}, work_dir, f"eval-{name}",
                                base_model=load_causal_lm(base.path, device()))
    base_summary = dict(base_eval["summary"])
    if name not in base_summary:  # θ0 on the MORL objective, from θ0's stored samples
        reference = base_eval["rows"]
        base_summary[name] = summarize(signal.score([r["prompt"] for r in reference],
                                                    [r["response"] for r in reference]),
                                       [r["prompt_id"] for r in reference], [p.prompt_id for p in held_out])
    manifest = {
        "format_version": FORMAT_VERSION, "status": "complete", "name": name, "source": "trained",
        "reward": signal_record.get("reward") or signal_record["morl"]["weights"], "training_signal": signal_record,
        "algorithm": settings.algorithm, "kind": kind, "config_hash": wanted, "hash_inputs": hash_inputs,
        "hyperparameters": settings.model_dump(), "seed": seed, "processes": process_state().num_processes,
        "distributed": describe_distribution(),
        "base": {"path": str(base.path), "fingerprint": base.fingerprint},
        "training_curve": outcome.curve, "training_details": outcome.details,
        "evaluation": _evaluation_record(config, name, base_summary, evaluation),
        "wall_time_s": round(time.time() - start, 1), "versions": _versions(),
    }

    def publish() -> None:
        write_json(tmp_dir / MANIFEST, manifest)
        replace_directory(tmp_dir, final_dir)  # the policy appears complete, or not at all
        shutil.rmtree(work_dir, ignore_errors=True)

    on_main(publish, f"publishing policy '{name}'")
    _log_result(name, manifest["evaluation"])
    return info_from_manifest(final_dir, manifest)


def save_merged_lora(adapter_dir: Path, base_path: Path, tokenizer) -> None:
    merged = load_policy_model(adapter_dir, base_path, "cpu", "float32")  # saved as trained (fp32)
    merged.save_pretrained(str(adapter_dir / "merged"))
    tokenizer.save_pretrained(str(adapter_dir / "merged"))


def _evaluation_record(config: TrainConfig, name: str, base_summary: dict, evaluation: dict) -> dict:
    policy_summary = evaluation["summary"]
    return {
        "split": "held-out (" + ("demo validation" if config.prompts.source == "demo" else "prompts file") + ")",
        "n_prompts": evaluation["n_prompts"], "samples_per_prompt": evaluation["samples_per_prompt"],
        "own_reward": name, "base": base_summary, "policy": policy_summary,
        "difference": compare_summaries(base_summary, policy_summary), "examples": evaluation["rows"][:6],
    }


# -- loaded policies ---------------------------------------------------------------------------------------------

def record_loaded(config: TrainConfig, entry: PolicyEntry, path: Path, base: BaseInfo, tokenizer,
                  rewards: dict[str, Reward], held_out, base_eval: dict) -> PolicyInfo:
    """A manifest for a given policy (no weights copied): its place in the run, θ0's and its own numbers."""
    name = entry.reward
    final_dir = config.run_dir / "policies" / name
    kind = policy_kind(path)
    policy_fingerprint = fingerprint(path, run_memo(config.run_dir))
    wanted = stable_hash({"format": FORMAT_VERSION, "loaded": str(path), "fingerprint": policy_fingerprint,
                          "base": base.fingerprint, "evaluation": config.evaluation.model_dump(),
                          "prompts": config.prompts.model_dump(), "rewards": config.reward_identities()})
    existing = read_manifest(final_dir)
    if is_complete(existing, wanted):
        return info_from_manifest(final_dir, existing, reused=True)
    evaluation = evaluate_model(load_policy_model(path, base.path, device()), tokenizer, held_out, config.evaluation,
                                rewards, config.run_dir, f"eval-{name}", base_model=load_causal_lm(base.path, device()))
    manifest = {"format_version": FORMAT_VERSION, "status": "complete", "name": name, "source": "loaded",
                "reward": name, "algorithm": None, "kind": kind, "config_hash": wanted, "path": str(path),
                "policy_fingerprint": policy_fingerprint, "base": {"path": str(base.path), "fingerprint": base.fingerprint},
                "evaluation": _evaluation_record(config, name, base_eval["summary"], evaluation),
                "versions": _versions()}

    def publish() -> None:
        staging = temporary_directory_beside(final_dir)
        write_json(staging / MANIFEST, manifest)
        replace_directory(staging, final_dir)

    on_main(publish, f"recording loaded policy '{name}'")
    return info_from_manifest(final_dir, manifest)


# -- small helpers -----------------------------------------------------------------------------------------------

def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _versions() -> dict:
    out = {}
    for package in ("torch", "transformers", "trl", "peft", "accelerate"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = None
    return out


def _log_result(name: str, evaluation: dict) -> None:
    if not is_main_process():
        return
    own = evaluation["own_reward"]
    base, policy = evaluation["base"].get(own), evaluation["policy"].get(own)
    if base and policy:
        log.info("policy '%s': %s %.4f ± %.4f (θ0 %.4f ± %.4f, n=%d)", name, own, policy["mean"], policy["stderr"],
                 base["mean"], base["stderr"], policy["n"])
