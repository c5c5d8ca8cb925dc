"""DPO with trl's DPOTrainer, on reward-labelled pairs sampled from the model (optionally iterated) or a file.

Round r samples k responses per training prompt from the current model (θ0 in round 1), keeps the best and
worst by the reward, and trains `max_steps` steps. Later rounds continue from the previous round's weights
(or adapter) and use that previous policy as reference: full fine-tuning loads it as the reference model; with
LoRA, trl's DPOTrainer, given a PeftModel that already holds an adapter, keeps a frozen copy of it as a second
adapter named "ref" and computes the reference log-probabilities with that one active (the base with the adapter
off, θ0, is the reference only in round 1, where the adapter is new).
"""
from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

from lines.models import load_causal_lm, load_policy_model

from ..distributed import barrier, device, is_main_process
from .checkpoints import load_tokenizer
from .curves import training_curve
from .environment import ModelDtypes, model_dtypes
from .errors import TrainingError
from .jobs import PolicyJob, TrainOutcome, trl_completion, trl_prompt
from ..stage_times import timed
from .preference_pairs import file_pairs, sampled_pairs
from .trainer_args import lora_config, trainer_config


def dpo_dataset(tokenizer, pairs: list[dict]):
    from datasets import Dataset  # heavy: only when DPO trains

    return Dataset.from_list([{"prompt": trl_prompt(tokenizer, p["prompt"]),
                               "chosen": trl_completion(tokenizer, p["chosen"]),
                               "rejected": trl_completion(tokenizer, p["rejected"])} for p in pairs])


def train_dpo(job: PolicyJob, out_dir: Path) -> TrainOutcome:
    from trl import DPOConfig, DPOTrainer  # heavy: only when DPO trains

    settings, spec = job.settings, job.settings.dpo
    if spec.pairs == "file" and spec.rounds > 1:
        raise TrainingError(f"{job.where}: dpo.rounds > 1 needs sampled pairs (a fixed file gives the same pairs "
                            "every round); set dpo.rounds: 1 or dpo.pairs: sampled")
    tokenizer = load_tokenizer(job.base_path)
    curve: list[dict] = []
    rounds: list[dict] = []
    current: Path | None = None  # the previous round's policy (checkpoint or adapter)
    for round_index in range(spec.rounds):
        round_dir = job.work_dir / f"round{round_index}"
        if spec.pairs == "file":
            pairs, stats = file_pairs(spec)
        else:
            sampler = (load_causal_lm(job.base_path, device()) if current is None
                       else load_policy_model(current, job.base_path, device()))
            # θ0's samples are drawn once per run: every policy ranks the same ones by its own reward.
            shared = (job.base_path, job.work_dir.parent / "theta0_samples") if current is None else None
            pairs, stats = sampled_pairs(sampler, tokenizer, job.train_prompts, spec, job.reward,
                                         job.seed + round_index, round_dir, f"pairs{round_index}", shared)
            del sampler
        if is_main_process():
            round_dir.mkdir(parents=True, exist_ok=True)
            with (round_dir / "pairs.jsonl").open("w") as handle:
                for pair in pairs:
                    handle.write(json.dumps(pair) + "\n")
        rounds.append({"round": round_index, **stats})

        dtypes = model_dtypes(settings, job.where)
        args = trainer_config(DPOConfig, "dpo", settings, job.trainer_dir(f"round{round_index}"),
                              job.seed + round_index, job.where, model_init_kwargs={"dtype": dtypes.load})
        model, peft_config = _round_model(job, current, dtypes)
        trainer = DPOTrainer(model=model, args=args, train_dataset=dpo_dataset(tokenizer, pairs),
                             processing_class=tokenizer, peft_config=peft_config,
                             ref_model=_reference_model(job, current, dtypes))
        _check_lora_reference(trainer, job, current)
        with timed("DPO training steps"):
            trainer.train()
        last = round_index == spec.rounds - 1
        target = out_dir if last else round_dir / "policy"
        trainer.save_model(str(target))  # every process calls it: ZeRO-3 gathers the shards here
        if is_main_process():
            # PEFT saves every adapter of the model, the frozen reference as target/ref/: the policy is "default".
            shutil.rmtree(target / REFERENCE_ADAPTER, ignore_errors=True)
        curve.extend(training_curve(trainer.state.log_history, step_offset=round_index * settings.max_steps,
                                    round=round_index))
        del trainer, model
        gc.collect()
        barrier()
        if current is not None and is_main_process():
            shutil.rmtree(current, ignore_errors=True)
        current = target
    return TrainOutcome(curve, {"rounds": rounds})


REFERENCE_ADAPTER = "ref"  # the name trl gives its frozen copy of a PeftModel's adapter


def _check_lora_reference(trainer, job: PolicyJob, current: Path | None) -> None:
    """A later LoRA round must be anchored to the previous round's adapter. trl keeps a frozen copy of it as the
    "ref" adapter, except where PEFT cannot hold two adapters (PEFT < 0.20 with `target_parameters`): it then falls
    back, with a warning only, to the base model, i.e. θ0. Refuse that rather than train against another anchor."""
    if job.settings.lora is None or current is None:
        return
    if REFERENCE_ADAPTER not in trainer.accelerator.unwrap_model(trainer.model).peft_config:
        raise TrainingError(f"{job.where}: dpo.rounds > 1 with LoRA needs the previous round's adapter as the "
                            "reference, and this PEFT version cannot keep a frozen copy of it beside the trained one "
                            "(trl would use θ0 instead); upgrade peft to >= 0.20, or set dpo.rounds: 1")


def _round_model(job: PolicyJob, current: Path | None, dtypes: ModelDtypes):
    """(model, peft_config) for a round: θ0 by path in round 1, else the previous round's weights/adapter."""
    lora = job.settings.lora
    if current is None:
        return str(job.base_path), (lora_config(lora) if lora is not None else None)
    if lora is None:
        return str(current), None
    from peft import PeftModel  # heavy, and only for LoRA policies

    base = load_causal_lm(job.base_path, "cpu", dtypes.load, "θ0")  # the trainer places it
    return PeftModel.from_pretrained(base, str(current), is_trainable=True), None


def _reference_model(job: PolicyJob, current: Path | None, dtypes: ModelDtypes):
    """The frozen reference of full fine-tuning (θ0, or the previous round's policy) in the run's precision; None
    where trl needs none (LoRA: the base with the adapter off in round 1, its frozen copy of the previous adapter
    later) or would build the same itself from the model's path (fp32 runs)."""
    if job.settings.lora is not None or dtypes.reference == dtypes.load:
        return None
    reference = current if current is not None else job.base_path
    return load_causal_lm(reference, "cpu", dtypes.reference, "reference model")  # the trainer places it
