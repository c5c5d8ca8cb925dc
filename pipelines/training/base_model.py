"""θ0: a given checkpoint, or one built by the SFT stage under runs/<name>/base/.

The SFT stage trains a tokenizer (or loads one), builds the initial model (random weights from a config, or
a checkpoint to fine-tune), runs trl's SFTTrainer, and writes θ0 with its tokenizer. Its record
(runs/<name>/base_manifest.json, beside θ0 rather than inside it, because merges copy θ0's side files)
carries the config hash that lets a resumed run reuse θ0.
"""
from __future__ import annotations

import gc
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lines.atomic import replace_directory, write_json
from lines.checkpoint import Checkpoint
from lines.fingerprints import fingerprint, run_memo, stable_hash
from lines.models import load_causal_lm, resolve_local

from ..config.training import SFTSpec, TrainConfig
from ..distributed import barrier, is_main_process, on_main, process_state
from .batching import for_processes
from .checkpoints import load_tokenizer
from .curves import training_curve
from .environment import model_dtypes
from .errors import TrainingError
from .sft_data import row_texts, sft_rows
from .tokenizer_train import train_bpe_tokenizer
from .trainer_args import lora_config, trainer_config

log = logging.getLogger(__name__)
BASE_MANIFEST = "base_manifest.json"


@dataclass
class BaseInfo:
    path: Path          # θ0's checkpoint directory (with tokenizer)
    fingerprint: str    # lines.fingerprints.fingerprint of its directory (weights, config, tokenizer)
    source: str         # 'sft' or 'given'
    reused: bool = False
    manifest: dict | None = None


def sft_hash(config: TrainConfig) -> str:
    return stable_hash({"sft": config.base.sft.model_dump(), "seed": config.seed})


def prepare_base(config: TrainConfig) -> BaseInfo:
    """θ0 for this run; trains it if the config has an SFT stage and no finished θ0 with the same settings exists."""
    if config.base.path is not None:
        path = resolve_local(config.base.path, "base.path")
        if not (path / "config.json").is_file():
            raise TrainingError(f"base.path '{config.base.path}' has no config.json; θ0 must be a full Hugging Face "
                                "checkpoint (a PEFT adapter cannot be θ0)")
        if not any(path.glob("*.safetensors")):
            raise TrainingError(f"base.path '{config.base.path}' has no .safetensors weights; re-save θ0 with "
                                "save_pretrained(safe_serialization=True)")
        return BaseInfo(path, fingerprint(path, run_memo(config.run_dir)), "given")
    return train_base(config)


def read_base_manifest(run_dir: Path) -> dict | None:
    path = run_dir / BASE_MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def train_base(config: TrainConfig) -> BaseInfo:
    run_dir, spec = config.run_dir, config.base.sft
    base_dir, wanted = run_dir / "base", sft_hash(config)
    previous = read_base_manifest(run_dir)
    if previous and previous.get("config_hash") == wanted and base_dir.is_dir():
        log.info("θ0: reusing %s (same SFT settings)", base_dir)
        return BaseInfo(base_dir, previous["fingerprint"], "sft", reused=True, manifest=previous)

    start = time.time()
    work = run_dir / "work" / "sft"
    init_dir, out_tmp = work / "init", run_dir / ".base.tmp"
    rows = sft_rows(spec.data, config.seed)

    def start_over() -> None:
        for stale in (work, out_tmp, run_dir / "logs" / "base"):
            shutil.rmtree(stale, ignore_errors=True)
        (run_dir / BASE_MANIFEST).unlink(missing_ok=True)
        build_initial_model(spec, rows, init_dir, config.seed)

    # Every process trains from the same initial weights and tokenizer; a bad tokenizer stops them all.
    on_main(start_over, "building the initial model")

    spec = spec.model_copy(update={"training": for_processes(spec.training, process_state().num_processes,
                                                             f"{config.source}: base.sft.training")})
    log_history = run_sft(spec, rows, init_dir, out_tmp, run_dir / "logs" / "base", config.seed,
                          f"{config.source}: base.sft.training")

    def publish() -> None:
        replace_directory(out_tmp, base_dir)
        manifest = {"config_hash": wanted, "fingerprint": fingerprint(base_dir, run_memo(config.run_dir)),
                    "path": str(base_dir),
                    "settings": spec.model_dump(), "parameters": count_parameters(base_dir),
                    "training_curve": training_curve(log_history), "wall_time_s": round(time.time() - start, 1)}
        write_json(run_dir / BASE_MANIFEST, manifest)  # written last: θ0 counts as finished only with it
        shutil.rmtree(work, ignore_errors=True)

    on_main(publish, "publishing θ0")
    manifest = read_base_manifest(run_dir)
    return BaseInfo(base_dir, manifest["fingerprint"], "sft", manifest=manifest)


def build_initial_model(spec: SFTSpec, rows: list[dict], out_dir: Path, seed: int) -> None:
    """The model SFT starts from, with its tokenizer, saved to `out_dir`."""
    from transformers import AutoConfig, AutoModelForCausalLM, set_seed  # heavy: only when θ0 is built

    max_positions = spec.init.get("max_position_embeddings", max(spec.max_length, 128))
    if spec.tokenizer.path is not None:
        tokenizer = load_tokenizer(resolve_local(spec.tokenizer.path, "base.sft.tokenizer.path"))
    else:
        bpe = spec.tokenizer.train
        tokenizer = train_bpe_tokenizer(row_texts(rows), bpe.vocab_size, bpe.min_frequency, max_positions)
    if any("messages" in row for row in rows) and not getattr(tokenizer, "chat_template", None):
        raise TrainingError("base.sft.data is in chat format but the tokenizer has no chat template; give a "
                            "tokenizer with one (base.sft.tokenizer.path) or use format: text")
    if "path" in spec.init:
        # Fine-tuned in fp32 from the CPU (the trainer places it): the checkpoint SFT starts from.
        model = load_causal_lm(spec.init["path"], "cpu", "float32", "base.sft.init.path").train()
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    else:
        fields = {k: v for k, v in spec.init.items() if k != "model_type"}
        fields.setdefault("max_position_embeddings", max_positions)
        try:
            model_config = AutoConfig.for_model(spec.init["model_type"], vocab_size=len(tokenizer),
                                                pad_token_id=tokenizer.pad_token_id,
                                                bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id, **fields)
        except (ValueError, TypeError) as err:
            raise TrainingError(f"base.sft.init: cannot build a '{spec.init['model_type']}' config ({err}); check "
                                "model_type and its fields") from None
        set_seed(seed)
        model = AutoModelForCausalLM.from_config(model_config)
    # Generation stops at EOS and pads with <pad>; store it so every later stage generates the same way.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def run_sft(spec: SFTSpec, rows: list[dict], init_dir: Path, out_dir: Path, trainer_dir: Path, seed: int,
            where: str) -> list[dict]:
    from datasets import Dataset  # heavy: only when θ0 is trained
    from trl import SFTConfig, SFTTrainer  # heavy: only when θ0 is trained

    tokenizer = load_tokenizer(init_dir)
    args = trainer_config(SFTConfig, "sft", spec, trainer_dir, seed, where,
                          model_init_kwargs={"dtype": model_dtypes(spec.training, where).load})
    dataset = Dataset.from_list(rows)
    peft_config = None
    if spec.training.lora is not None:
        peft_config = lora_config(spec.training.lora)
    trainer = SFTTrainer(model=str(init_dir), args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    trainer.train()
    if peft_config is not None:  # θ0 must be a full checkpoint: fold the SFT adapter in
        merged = trainer.model.merge_and_unload()
        if is_main_process():
            merged.save_pretrained(str(out_dir))
    else:
        trainer.save_model(str(out_dir))
    if is_main_process():
        tokenizer.save_pretrained(str(out_dir))
    history = list(trainer.state.log_history)
    del trainer
    gc.collect()
    barrier()
    return history


def count_parameters(path: Path) -> int:
    checkpoint = Checkpoint(path)
    try:
        return sum(info.numel for info in checkpoint.tensors.values())
    finally:
        checkpoint.close()

