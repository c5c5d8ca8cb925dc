"""What a run config will do, printed by `--check`: stages, points, generations, memory per GPU.

Counts come from the config and its prompt files; memory estimates from the formulas of memory.py and the models'
config.json where it is on this machine (a local checkpoint, or the hub cache). Nothing is downloaded or loaded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lines.atomic import free_bytes
from lines.recipe import canonical_merge

from ..config.checks import policies_are_adapters, policy_lora_ranks
from ..config.prompts import DemoPromptsConfig
from ..config.run import RunConfig
from ..config.training import policy_settings
from ..prompts import load_prompts
from ..sweep.plan import evaluation_points, needs_matching, validation_points
from ..training.batching import for_processes
from ..training.prompt_sources import training_prompts
from .launch import Launch
from .memory import BYTES, ModelShape, gigabytes, local_config, model_shape, training_bytes

HALF = 2  # bytes per parameter in bf16/fp16: what `precision: auto` and `dtype: auto` give on a GPU


@dataclass
class Plan:
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, text: str, indent: int = 0) -> None:
        self.lines.append("  " * indent + text)

    def render(self) -> str:
        return "\n".join(self.lines + [f"warning: {w}" for w in self.warnings])


def n(value: int) -> str:
    return f"{value:,}"


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def dtype_bytes(name: str, on_gpu: bool) -> int:
    """Bytes per parameter of a config dtype; `auto` is bf16 on a GPU, fp32 on a CPU."""
    return (HALF if on_gpu else 4) if name == "auto" else BYTES.get(name, 4)


class Models:
    """Shapes of the models a config names, from config.json where it is on this machine (memoised)."""

    def __init__(self):
        self._shapes: dict[tuple[str, str], ModelShape | None] = {}

    def shape(self, path: str, head: str = "causal_lm") -> ModelShape | None:
        if (path, head) not in self._shapes:
            config = local_config(path)
            self._shapes[(path, head)] = model_shape(config, head) if config else None
        return self._shapes[(path, head)]

    @staticmethod
    def where(path: str) -> str:
        if Path(path).expanduser().exists():
            return "local"
        return "hub id, in the hub cache" if local_config(path) else "hub id, fetched at run time"

    def describe(self, path: str, head: str = "causal_lm") -> str:
        shape = self.shape(path, head)
        size = f"{shape.parameters / 1e9:.2f} B parameters" if shape else "parameters unknown (no config.json here)"
        return f"{path} ({self.where(path)}; {size})"


def build_plan(cfg: RunConfig, launch: Launch, set_aside: list[str]) -> Plan:
    plan, models = Plan(), Models()
    # The run is for GPUs when the launch says so or the config asks for what only GPUs do (bf16, vLLM).
    on_gpu = (launch.gpus is not None and not launch.use_cpu) or bool(set_aside)
    plan.add(f"plan for {cfg.source} (counts from the config and its files; memory per process is an estimate of "
             "weights and optimizer states, on " + ("GPUs: auto = bf16" if on_gpu else "CPUs: auto = fp32") +
             "; formulas in pipelines/check/memory.py)")
    plan.add(f"launch: {launch.describe()}")
    base = _base_path(cfg)
    base_shape = models.shape(base) if base else _sft_shape(cfg)
    if base:
        plan.add(f"θ0: {models.describe(base)}")
    else:
        size = f"{base_shape.parameters / 1e6:.1f} M parameters" if base_shape else "size unknown"
        plan.add(f"θ0: built by the SFT stage from base.sft.init ({size})")
    for spec in cfg.rewards + cfg.metrics:
        if spec.type == "hf":
            plan.add(f"{spec.name}: {models.describe(spec.path, 'seq_cls')}; reads {spec.describe_format()}")
            if spec.uses_default_format:
                plan.warnings.append(f"reward '{spec.name}' reads the default format: {spec.describe_format()}")
        else:
            plan.add(f"{spec.name}: {spec.type}")
    if cfg.training is not None:
        _training(cfg, launch, base_shape, on_gpu, plan)
    generations = _sweep(cfg, launch, models, base_shape, on_gpu, plan)
    if cfg.seeds:
        plan.add(f"stage 3, report: each seed's in {cfg.run_dir}/seed-<s>/report; then the study over the seeds")
        plan.add(f"replicated over seeds {', '.join(map(str, cfg.seeds))}: every stage above runs {len(cfg.seeds)} "
                 f"times, into {cfg.run_dir}/seed-<s>/; the pooled report: {cfg.run_dir / 'study'}")
    else:
        plan.add(f"stage 3, report: {cfg.run_dir / 'report'}")
    _disk(cfg, base, base_shape, generations, plan)
    if set_aside:
        plan.add("not checked here (no CUDA device visible; check again on the GPU machine): " + ", ".join(set_aside))
    return plan


SAMPLE_BYTES = 400  # a generation's record in the sweep's cache besides its tokens: prompt, ids, counts
TOKEN_BYTES = 12  # a generated token in that record: its text (a few characters) and its id
CHECKPOINT = 4  # bytes per parameter of a saved trained checkpoint (saved as trained: fp32)


def _disk(cfg: RunConfig, base: str | None, shape: ModelShape | None, generations: int, plan: Plan) -> None:
    """What the run will write under its directory (estimated: trained checkpoints, the sweep's cache), against the
    free space there now; a warning when it does not fit."""
    written, unknown = generations * (SAMPLE_BYTES + TOKEN_BYTES * cfg.generation.max_new_tokens), []
    if cfg.training is not None:
        train = cfg.train_config
        if base is None:  # θ0 built here by the SFT stage
            written += shape.parameters * CHECKPOINT if shape else 0
            unknown += [] if shape else ["θ0"]
        for entry, settings in policy_settings(train):
            if settings is None:
                continue
            name = getattr(entry, "reward", None) or entry.name
            if shape is None:
                unknown.append(name)
            elif settings.lora is not None:
                written += shape.lora_parameters(settings.lora.r, settings.lora.target_modules) * CHECKPOINT
                written += shape.parameters * CHECKPOINT if settings.lora.save_merged else 0
            else:
                written += shape.parameters * CHECKPOINT
    written *= max(len(cfg.seeds or []), 1)
    free = free_bytes(cfg.run_dir)
    where = f"{gigabytes(free)} free there now" if free is not None else "free space there unknown"
    missing = f" + the size of {', '.join(unknown)} (no config.json here)" if unknown else ""
    plan.add(f"disk: the run writes about {gigabytes(written)}{missing} under {cfg.run_dir} (trained checkpoints, the "
             f"sweep's cache, the report); {where}")
    if free is not None and free < written:
        plan.warnings.append(f"disk: the run writes about {gigabytes(written)} under {cfg.run_dir} but only "
                             f"{gigabytes(free)} is free there; free space on that file system or set output_dir "
                             "to a place with room")


def _base_path(cfg: RunConfig) -> str | None:
    if cfg.training is None:
        return cfg.base_model
    return cfg.train_config.base.path


def _sft_shape(cfg: RunConfig) -> ModelShape | None:
    """θ0 built by the SFT stage: from its init checkpoint's config, or its init config with the vocabulary of the
    BPE it trains (its target size: an upper bound); None when the vocabulary is not known before training."""
    sft = cfg.train_config.base.sft if cfg.training is not None else None
    if sft is None:
        return None
    if "path" in sft.init:
        config = local_config(sft.init["path"])
        return model_shape(config) if config else None
    vocab = sft.tokenizer.train.vocab_size if sft.tokenizer.train is not None else sft.init.get("vocab_size")
    return model_shape({**sft.init, "vocab_size": vocab}) if vocab else None


def _training(cfg: RunConfig, launch: Launch, shape: ModelShape | None, on_gpu: bool, plan: Plan) -> None:
    train = cfg.train_config
    prompts, held_out = training_prompts(train.prompts, train.source)
    plan.add(f"stage 1, training: {len(prompts):,} training prompts, {len(held_out):,} held out for the manifests")
    for entry, settings in policy_settings(train):
        name = getattr(entry, "reward", None) or entry.name
        if settings is None:
            plan.add(f"{name}: loaded from {entry.path}", 1)
            continue
        # A global batch is cut for the launch the run is meant for (and refused there if it does not divide).
        settings = for_processes(settings, launch.processes, f"{train.source}: policy '{name}'")
        sequences = settings.max_steps * settings.per_device_batch_size * settings.gradient_accumulation_steps * \
            launch.processes
        kind = (f"LoRA r={settings.lora.r} on {settings.lora.target_modules}" if settings.lora is not None
                else "full fine-tuning")
        what = f"{settings.algorithm}, {kind}, {settings.max_steps} steps × {settings.per_device_batch_size} per " \
               f"device × {settings.gradient_accumulation_steps} accumulation × " \
               f"{plural(launch.processes, 'process', 'processes')} = " \
               f"{plural(sequences, 'pair' if settings.algorithm == 'dpo' else 'sequence')}"
        if settings.algorithm == "dpo" and settings.dpo.pairs == "sampled":
            generations = len(prompts) * settings.dpo.samples_per_prompt
            what += f"; pairs sampled from {n(len(prompts))} prompts × {settings.dpo.samples_per_prompt} samples " \
                    f"= {n(generations)} generations per round × {settings.dpo.rounds}"
        plan.add(f"{name}: {what}", 1)
        plan.add(f"memory per process: {_training_memory(settings, launch, shape, on_gpu)}", 2)


UNKNOWN = "unknown: θ0's config.json is not on this machine (`hf download <id> config.json` fetches it alone)"


def _training_memory(settings, launch: Launch, shape: ModelShape | None, on_gpu: bool) -> str:
    if shape is None:
        return UNKNOWN
    half = settings.precision in ("bf16", "fp16") or (settings.precision == "auto" and on_gpu)
    load = HALF if half else 4
    needs_reference = settings.algorithm in ("dpo", "ppo") or settings.beta > 0
    if settings.lora is not None:
        trained = shape.lora_parameters(settings.lora.r, settings.lora.target_modules)
        frozen, reference, reference_bytes = shape.parameters, 0, 0
        about = f"θ0 frozen in {'bf16' if half else 'fp32'} + {trained / 1e6:.0f} M LoRA parameters trained"
    else:
        trained, frozen = shape.parameters, 0
        # DPO's and PPO's references load in the run's precision; trl builds RLOO/GRPO's from the fp32 load settings.
        reference = shape.parameters if needs_reference else 0
        reference_bytes = load if settings.algorithm in ("dpo", "ppo") else 4
        about = "θ0 trained in full" + (" + a frozen reference" if reference else "")
    if settings.algorithm == "ppo":
        # PPO's value model (θ0's weights with a scalar head) is trained in full beside the policy, LoRA or not.
        trained += shape.parameters
        about += " + a value model trained in full"
    if launch.zero_stage == 3:
        about += "; ZeRO-3 also gathers the parameters of the layers it is computing"
    total = training_bytes(trained, frozen, load, reference, reference_bytes, launch.processes, launch.zero_stage,
                           launch.offload_optimizer, launch.offload_params)
    sampling = shape.parameters * (HALF if on_gpu else 4)
    return f"{gigabytes(total)} ({about}) + activations; sampling with θ0: {gigabytes(sampling)} + KV cache"


def _sweep(cfg: RunConfig, launch: Launch, models: Models, shape: ModelShape | None, on_gpu: bool,
           plan: Plan) -> int:
    """The sweep's lines of the plan; returns how many generations it makes."""
    prompts = cfg.prompts
    n_validation = prompts.n_validation
    n_eval = prompts.n_eval if prompts.n_eval is not None else _remaining_prompts(cfg)
    per_prompt = cfg.generation.n
    source = "the demo's prompts" if isinstance(prompts, DemoPromptsConfig) else (prompts.path or prompts.dataset)
    plan.add(f"stage 2, sweep: prompts from {source}: {n(n_validation)} validation, {n(n_eval)} evaluation; "
             f"{plural(per_prompt, 'sample')} each")
    references = 1 if cfg.training is not None and cfg.training.morl is not None else 0
    total = 0
    evaluation = evaluation_points(cfg, {})
    # The norm-matched controls: one more merge per LiNeS point (its λ comes from the merge's profile at run time).
    matched = [p for p in evaluation if needs_matching(p)] if cfg.sweep.uniform_control.matched else []
    for split, points, count in (("validation", validation_points(cfg), n_validation),
                                 ("evaluation", evaluation, n_eval), ("matched controls", matched, n_eval)):
        if not points:
            continue
        distinct = len({json.dumps(canonical_merge(p.merge_spec()), sort_keys=True) for p in points}) \
            if split != "matched controls" else len(points)
        distinct += references if split == "evaluation" else 0
        generations = distinct * count * per_prompt
        total += generations
        extra = f" (+{references} reference polic{'y' if references == 1 else 'ies'})" if split == "evaluation" \
            and references else ""
        plan.add(f"{split}: {len(points)} points{extra}, {distinct} distinct merges × {n(count)} prompts × "
                 f"{per_prompt} = {n(generations)} generations", 1)
    plan.add(f"generations in all: {n(total)} of at most {cfg.generation.max_new_tokens} new tokens, split over "
             f"{plural(launch.processes, 'process', 'processes')}", 1)
    plan.add(_route(cfg), 1)
    plan.add(f"memory per process: {_sweep_memory(cfg, launch, models, shape, on_gpu, plan)}", 1)
    return total


def _remaining_prompts(cfg: RunConfig) -> int:
    return len(load_prompts(cfg.prompts)) - cfg.prompts.n_validation


def _route(cfg: RunConfig) -> str:
    if cfg.sweep.lora_route == "dense" or not policies_are_adapters(cfg):
        return "each point merged densely into the generation model's weights"
    ranks = policy_lora_ranks(cfg)
    rank = sum(r for r in ranks.values() if r) if all(ranks.values()) else None
    limit = cfg.generation.vllm.max_lora_rank if cfg.generation.vllm.enable_lora else None
    text = f"each point its exact soup adapter, rank {rank if rank is not None else 'unknown'} = Σ of the policies' " \
           "ranks"
    return text + (f" (vLLM max_lora_rank {limit})" if limit is not None else "")


def _sweep_memory(cfg: RunConfig, launch: Launch, models: Models, shape: ModelShape | None, on_gpu: bool,
                  plan: Plan) -> str:
    if shape is None:
        return UNKNOWN
    weights = shape.parameters * dtype_bytes(cfg.generation.dtype, on_gpu)
    outside, parts = 0.0, []
    if any(spec.wants_base_model() for spec in cfg.objectives):
        outside += weights
        parts.append(f"θ0 for KL {gigabytes(weights)}")
    rm_bytes = 0.0
    for spec in cfg.rewards + cfg.metrics:
        if spec.type == "hf":
            rm = models.shape(spec.path, "seq_cls")
            if rm is None:
                parts.append(f"{spec.name} unknown")
            else:
                rm_bytes += rm.parameters * dtype_bytes(spec.dtype, on_gpu)
    if rm_bytes:
        parts.append(f"reward models {gigabytes(rm_bytes)}")
    outside += rm_bytes
    backend = cfg.generation.backend if on_gpu else "transformers"  # vLLM runs on GPUs here
    transformers_total = weights + outside
    transformers_line = f"{gigabytes(transformers_total)} (generation model {gigabytes(weights)}" + \
        "".join(f" + {p}" for p in parts) + ")"
    if backend == "transformers":
        return transformers_line + " + KV cache"
    vllm = cfg.generation.vllm
    policy_metrics = any(spec.is_metric for spec in cfg.metrics)
    if policy_metrics:  # vLLM exposes no torch module: the sweep keeps a transformers copy for KL and perplexity
        outside += weights
        parts.insert(0, f"θ0 copy for policy metrics {gigabytes(weights)}")
    slots = _lora_slot_bytes(cfg, shape) if vllm.enable_lora else 0
    inside = f"weights {gigabytes(weights)}" + (f" + {vllm.max_loras} LoRA slots of rank {vllm.max_lora_rank} "
                                                 f"{gigabytes(slots)}" if slots else "") + " + KV cache"
    need = outside / (1 - vllm.gpu_memory_utilization) if vllm.gpu_memory_utilization < 1 else float("inf")
    text = (f"vLLM takes {vllm.gpu_memory_utilization:.0%} of the GPU ({inside}); outside it {gigabytes(outside)} ("
            + " + ".join(parts) + f"): a GPU of at least {gigabytes(max(need, (weights + slots) / vllm.gpu_memory_utilization))}")
    if launch.gpu_memory_gb:
        gpu = launch.gpu_memory_gb * 1e9
        if outside > (1 - vllm.gpu_memory_utilization) * gpu:
            plan.warnings.append(f"sweep: outside vLLM the process holds about {gigabytes(outside)} but "
                                 f"{1 - vllm.gpu_memory_utilization:.0%} of a {launch.gpu_memory_gb:g} GB GPU is "
                                 f"{gigabytes((1 - vllm.gpu_memory_utilization) * gpu)}; lower "
                                 "generation.vllm.gpu_memory_utilization or use larger GPUs")
        if weights + slots > vllm.gpu_memory_utilization * gpu:
            plan.warnings.append(f"sweep: vLLM's share of the GPU ({gigabytes(vllm.gpu_memory_utilization * gpu)}) "
                                 f"cannot hold the weights and LoRA slots ({gigabytes(weights + slots)})")
    if backend == "auto":
        text += f"; with the transformers backend (auto without vLLM): {transformers_line}"
    return text


def _lora_slot_bytes(cfg: RunConfig, shape: ModelShape) -> float:
    """vLLM reserves max_loras adapters of max_lora_rank on the adapted layers (in half precision)."""
    targets: list[str] | str = "all-linear"
    if cfg.training is not None:
        found = [s.lora.target_modules for _, s in policy_settings(cfg.train_config) if s is not None and s.lora]
        targets = "all-linear" if not found or "all-linear" in found else sorted({t for f in found for t in f})
    vllm = cfg.generation.vllm
    return vllm.max_loras * shape.lora_parameters(vllm.max_lora_rank, targets) * HALF
