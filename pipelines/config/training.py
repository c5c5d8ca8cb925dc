"""The training stage's config: YAML + `--set` overrides, validated up front with pydantic.

    run_name: train_demo
    output_dir: runs
    seed: 0
    base:                        # θ0: either an existing checkpoint ...
      path: runs/sft/base        #   local directory or hub id
    # ... or an SFT stage that builds it:
    #   sft:
    #     init: {model_type: llama, hidden_size: 128, ...}   # or {path: some/checkpoint}
    #     tokenizer: {train: {vocab_size: 1024}}            # or {path: some/tokenizer}
    #     data: {source: demo, n: 6000}                     # or {path: corpus.jsonl, format: text|chat, field: ...}
    #     training: {learning_rate: 1e-3, max_steps: 300, ...}
    rewards: [{name: positive, type: vader}, {name: long, type: length}]   # reward_models specs
    prompts: {source: demo, n_train: 256, n_eval: 64}   # or {source: file, path: ..., prompt_field: ...}
    training: {algorithm: dpo, learning_rate: 5e-4, max_steps: 60, lora: null, dpo: {...}, rl: {...}}
    policies:
      - {reward: positive}
      - {reward: long, training: {learning_rate: 3e-4}}    # per-policy overrides of `training`
      - {reward: helpful, path: some/adapter}              # loaded, not trained
    morl: {name: morl, weights: {positive: 0.5, long: 0.5}}  # optional weighted-sum baseline
    evaluation: {samples_per_prompt: 2, max_new_tokens: 48, temperature: 1.0}

`pipelines.config.load.load_config(path, overrides)` returns a `TrainConfig`; every bad field is one `TrainingError`
line naming the file, the field and the fix. `policy_settings(config)` resolves each policy's training settings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_serializer, model_validator

from lines.fingerprints import run_memo
from lines.safe_paths import check_path_component
from lines.config_errors import describe_validation_error
from lines.schema import StrictModel
from reward_models import RewardSpecField, reward_identity

from ..training.errors import TrainingError
from .overrides import deep_merge
from .prompts import PromptSource
from .sampling import MaxNewTokens, SamplesPerGroup, SamplesPerPrompt, Temperature, TopP

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Algorithm = Literal["dpo", "rloo", "grpo", "ppo"]


class LoraSpec(StrictModel):
    """peft LoraConfig fields. `save_merged` also writes θ0 + B·A as a full checkpoint (merged/) for tools that
    take only full checkpoints; the adapter itself stays the policy."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    save_merged: bool = False


class Optimisation(StrictModel):
    """What every trainer shares (SFT, DPO, RLOO, GRPO): optimiser, schedule, batch, precision, logging."""

    learning_rate: float = Field(5e-5, gt=0)
    max_steps: int = Field(100, ge=1)
    per_device_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    # The batch of one optimiser step over all processes. When set, the experiment is the same on any process
    # count: each process takes global_batch_size / processes sequences per step, in micro-batches of at most
    # per_device_batch_size, accumulated (batching.py); gradient_accumulation_steps is then derived, not given.
    global_batch_size: int | None = Field(None, ge=1)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    logging_steps: int = Field(5, ge=1)
    # auto: bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU (mixed precision never runs on CPU here).
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    seed: int | None = None  # None: the run's seed
    lora: LoraSpec | None = None
    # Any other field of trl's config class for this stage (SFTConfig, DPOConfig, RLOOConfig, GRPOConfig, PPOConfig),
    # passed through; checked against that class, and refused for the fields the settings above set (trainer_fields.py).
    trainer: dict[str, Any] = Field(default_factory=dict)

    @model_serializer(mode="wrap")
    def _without_empty_trainer(self, handler):
        # An empty pass-through is left out, so that config hashes of runs that set none stay as they were.
        data = handler(self)
        if isinstance(data, dict) and not data.get("trainer"):
            data.pop("trainer", None)
        if isinstance(data, dict) and data.get("global_batch_size") is None:
            data.pop("global_batch_size", None)  # likewise for runs that state no global batch
        return data

    @model_validator(mode="after")
    def _one_way_to_state_accumulation(self):
        # (a default of 1 is fine: merged per-policy settings mark every field as set)
        if self.global_batch_size is not None and self.gradient_accumulation_steps != 1:
            raise ValueError("gradient_accumulation_steps is derived from global_batch_size and the process count; "
                             "remove it (per_device_batch_size caps the micro-batch)")
        return self


def sampling_temperature(value: float, what: str) -> float:
    """Sections that compare several samples of a prompt need them to differ: greedy decoding (0) makes them one."""
    if value == 0:
        raise ValueError(f"must be greater than 0: {what} must differ, and temperature 0 (greedy) makes them "
                         "identical; use a temperature such as 1.0")
    return value


class DPOSpec(StrictModel):
    """Where DPO's pairs come from: sampled from θ0 (k per prompt, best vs worst by the reward; iterated for
    `rounds`, each round sampling from the previous round's policy) or a local preference file."""

    pairs: Literal["sampled", "file"] = "sampled"
    dataset: str | None = None
    prompt_field: str = "prompt"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    samples_per_prompt: SamplesPerGroup = 8
    rounds: int = Field(1, ge=1)
    # The SFT term on the chosen responses keeps policies fluent (plain sigmoid DPO collapsed for one seed in
    # three in a trial); trl adds the losses with `loss_weights` (1.0 each by default).
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid", "sft"], min_length=1)
    loss_weights: list[float] | None = None
    # How the pairs' candidates are sampled (the sampling fields' one declaration: sampling.py).
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    max_new_tokens: MaxNewTokens = 48
    # Pairs whose best and worst rewards differ by no more than this teach nothing and are dropped.
    min_margin: float = Field(0.0, ge=0)

    @field_validator("temperature")
    @classmethod
    def _samples_differ(cls, value: float) -> float:
        return sampling_temperature(value, "the pairs' best and worst of k samples")

    @model_validator(mode="after")
    def _source(self):
        if self.pairs == "file" and not self.dataset:
            raise ValueError("dpo.pairs is 'file' but dpo.dataset is not set; give a local preference file "
                             "with prompt/chosen/rejected fields")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(f"dpo.loss_weights has {len(self.loss_weights)} entries for {len(self.loss_type)} "
                             "loss types; give one weight per loss type")
        return self


class RLSpec(StrictModel):
    """Online RL (RLOO, GRPO, PPO): completions per prompt and sampling during training (the sampling fields' one
    declaration: sampling.py)."""

    num_generations: SamplesPerGroup = 4
    max_new_tokens: MaxNewTokens = 48
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    num_iterations: int = Field(1, ge=1)

    @field_validator("temperature")
    @classmethod
    def _samples_differ(cls, value: float) -> float:
        return sampling_temperature(value, "a group's completions (and PPO's rollouts)")


class PPOSpec(StrictModel):
    """PPO's own settings (pipelines/training/ppo_config.py). One response per prompt is sampled at
    `rl.temperature`, up to `rl.max_new_tokens`; the KL penalty to θ0 is `beta` per token, fixed, or adapted toward
    `kl_target` (Ziegler et al. 2019: β ← β·(1 + clip(KL/kl_target − 1, ±0.2)·responses/kl_horizon) after each
    rollout, KL the mean per response). A training step is one rollout batch of per_device_batch_size ×
    gradient_accumulation_steps prompts per process, then `num_ppo_epochs` passes over it in `num_mini_batches`
    minibatches."""

    num_ppo_epochs: int = Field(4, ge=1)
    num_mini_batches: int = Field(1, ge=1)
    cliprange: float = Field(0.2, gt=0)           # policy ratio clip
    cliprange_value: float = Field(0.2, gt=0)     # value prediction clip
    vf_coef: float = Field(0.1, gt=0)             # value loss weight
    gamma: float = Field(1.0, ge=0, le=1)         # discount
    lam: float = Field(0.95, ge=0, le=1)          # GAE λ
    whiten_rewards: bool = False
    kl_estimator: Literal["k1", "k3"] = "k1"
    kl_target: float | None = Field(None, gt=0)   # KL per response the adaptive β aims at; null: β fixed
    kl_horizon: float | None = Field(None, gt=0)  # responses over which β moves by at most ±20%; null: β fixed
    missing_eos_penalty: float | None = Field(None, ge=0)  # subtracted from the reward of a response without EOS
    # The value model: a sequence-classification checkpoint sharing θ0's tokenizer (e.g. a reward model trained on
    # θ0), or None for θ0's own weights with a new scalar head.
    value_model: str | None = None

    @model_validator(mode="after")
    def _controller(self):
        if (self.kl_target is None) != (self.kl_horizon is None):
            raise ValueError("ppo.kl_target and ppo.kl_horizon go together: set both (β adapts toward kl_target) "
                             "or neither (β fixed)")
        return self


class PolicyTraining(Optimisation):
    algorithm: Algorithm = "dpo"
    beta: float = Field(0.1, ge=0)  # KL weight to θ0 (DPO temperature; RLOO/GRPO/PPO KL coefficient)
    max_length: int = Field(256, ge=8)  # prompt + completion tokens
    dpo: DPOSpec = Field(default_factory=DPOSpec)
    rl: RLSpec = Field(default_factory=RLSpec)
    ppo: PPOSpec = Field(default_factory=PPOSpec)

    @model_validator(mode="after")
    def _ppo_batches(self):
        """PPO splits each process's rollout batch (per_device_batch_size × gradient_accumulation_steps) into
        `num_mini_batches` minibatches, each one optimiser step over whole micro-batches (or a share of one
        micro-batch without accumulation). It samples without top-p; an adaptive β needs a start above 0."""
        if self.algorithm != "ppo":
            return self
        batch, accumulation, ppo = self.per_device_batch_size, self.gradient_accumulation_steps, self.ppo
        rollout = batch * accumulation
        if accumulation % ppo.num_mini_batches and (accumulation > 1 or batch % ppo.num_mini_batches):
            raise ValueError(f"ppo.num_mini_batches {ppo.num_mini_batches} does not split the rollout batch "
                             f"(per_device_batch_size {batch} × gradient_accumulation_steps {accumulation}) into "
                             "minibatches of whole micro-batches; use a divisor of gradient_accumulation_steps, or "
                             "with gradient_accumulation_steps 1 a divisor of per_device_batch_size")
        if ppo.whiten_rewards and rollout // ppo.num_mini_batches < 8:
            raise ValueError(f"ppo.whiten_rewards needs minibatches of at least 8 responses per process, got "
                             f"{rollout // ppo.num_mini_batches}; raise the batch size or set whiten_rewards: false")
        if ppo.kl_target is not None and self.beta == 0:
            raise ValueError("ppo.kl_target is set but beta is 0, and the adaptive controller scales β, so it would "
                             "stay 0; give beta > 0 as its initial value")
        if self.rl.top_p != 1.0:
            raise ValueError(f"rl.top_p is {self.rl.top_p} but PPO samples from the full distribution (its "
                             "ratios and KL are those of the policy itself); set rl.top_p: 1.0")
        return self


class TokenizerSpec(StrictModel):
    path: str | None = None
    train: "BPESpec | None" = None

    @model_validator(mode="after")
    def _one(self):
        if (self.path is None) == (self.train is None):
            raise ValueError("tokenizer needs exactly one of `path` (an existing tokenizer) or `train` "
                             "(a byte-level BPE trained on the SFT texts)")
        return self


class BPESpec(StrictModel):
    vocab_size: int = Field(1024, ge=300)
    min_frequency: int = Field(2, ge=1)


class SFTData(StrictModel):
    source: Literal["demo", "file"] = "demo"
    n: int = Field(6000, ge=1)  # demo: how many texts to generate
    review_share: float = Field(1.0, gt=0, le=1)  # demo: the share of reviews; the rest are the other demo domains
    path: str | None = None
    format: Literal["text", "chat"] = "text"
    field: str | None = None  # default: 'text' for text, 'messages' for chat

    @model_validator(mode="after")
    def _file(self):
        if self.source == "file" and not self.path:
            raise ValueError("sft.data.source is 'file' but sft.data.path is not set; give a local .jsonl/.json/.csv/"
                             ".parquet/.txt file")
        return self

    @property
    def column(self) -> str:
        return self.field or ("messages" if self.format == "chat" else "text")


class SFTSpec(StrictModel):
    # Either {path: checkpoint} to fine-tune, or a transformers config ({model_type: llama, ...}) to start from
    # random weights (the demo, which downloads nothing).
    init: dict[str, Any]
    tokenizer: TokenizerSpec = Field(default_factory=lambda: TokenizerSpec(train=BPESpec()))
    data: SFTData = Field(default_factory=SFTData)
    training: Optimisation = Field(default_factory=lambda: Optimisation(learning_rate=1e-3, max_steps=300,
                                                                        per_device_batch_size=16))
    max_length: int = Field(128, ge=8)

    @field_validator("init")
    @classmethod
    def _init_form(cls, v: dict) -> dict:
        if "path" in v:
            if len(v) > 1:
                raise ValueError("init: give either {path: checkpoint} or a model config, not both")
        elif "model_type" not in v:
            raise ValueError("init needs `path` (a checkpoint to fine-tune) or `model_type` (e.g. llama) with its "
                             "config fields, to start from random weights")
        return v


class BaseSpec(StrictModel):
    path: str | None = None
    sft: SFTSpec | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.path is None) == (self.sft is None):
            raise ValueError("base needs exactly one of `path` (an existing θ0 checkpoint) or `sft` (train θ0)")
        return self


class EvaluationSpec(StrictModel):
    """The held-out evaluation of θ0 and each policy: samples per prompt and how they are drawn (the sampling
    fields' one declaration: sampling.py)."""

    samples_per_prompt: SamplesPerPrompt = 2
    max_new_tokens: MaxNewTokens = 48
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    batch_size: int = Field(32, ge=1)
    seed: int = 1234
    kl: bool = True  # KL(policy ‖ θ0) on the policy's samples: shows collapse that rewards alone hide


class PolicyEntry(StrictModel):
    reward: str
    path: str | None = None  # loaded instead of trained: a checkpoint, a PEFT adapter, or a hub id
    training: dict[str, Any] = Field(default_factory=dict)  # overrides of the top-level `training`

    @model_validator(mode="after")
    def _loaded_or_trained(self):
        if self.path is not None and self.training:
            raise ValueError(f"policy '{self.reward}' has both `path` (loaded) and `training` overrides; "
                             "remove one")
        return self


class MorlSpec(StrictModel):
    """Multi-objective RL baseline: one policy trained on Σ w_i r_i (z-scored on θ0's samples by default, so
    that a reward in hundreds of characters does not drown one in [-1, 1])."""

    name: Annotated[str, AfterValidator(check_path_component)] = "morl"  # its policy's directory
    weights: dict[str, float]
    normalize: Literal["zscore", "raw"] = "zscore"
    training: dict[str, Any] = Field(default_factory=dict)

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict) -> dict:
        if not v:
            raise ValueError("morl.weights is empty; give a weight per reward, e.g. {positive: 0.5, long: 0.5}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("morl.weights must be non-negative with a positive sum")
        return v


class TrainingSection(StrictModel):
    """The training stage without the run's identity: what the main job's `training:` section holds (the run
    name, output directory, seed and, by default, the rewards come from the main config)."""

    base: BaseSpec
    rewards: list[RewardSpecField] | None = None
    prompts: PromptSource = Field(default_factory=PromptSource)
    training: PolicyTraining = Field(default_factory=PolicyTraining)
    policies: list[PolicyEntry] = Field(min_length=1)
    morl: MorlSpec | None = None
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)


class TrainConfig(TrainingSection):
    run_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$"), AfterValidator(check_path_component)]
    output_dir: str = "runs"
    seed: int = 0
    rewards: list[RewardSpecField] = Field(min_length=1)

    # Where the file came from, for error messages; not part of the schema's data.
    source: str = Field("config", exclude=True)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name

    def reward_names(self) -> list[str]:
        return [spec.name for spec in self.rewards]

    def reward_identities(self) -> list[dict]:
        """The rewards as cache keys see them: specs and the content of the files they name."""
        return [reward_identity(spec, run_memo(self.run_dir)) for spec in self.rewards]


TokenizerSpec.model_rebuild()


def merged_training(defaults: PolicyTraining, overrides: dict, where: str) -> PolicyTraining:
    """`defaults` with a policy's overrides deep-merged in, validated as a whole. (Its `trainer:` fields are checked
    against trl's class with the config: checks.check_config.)"""
    merged = deep_merge(defaults.model_dump(), overrides)
    try:
        return PolicyTraining.model_validate(merged)
    except ValidationError as err:
        raise TrainingError(describe_validation_error(err, where)) from None


def policy_settings(config: TrainConfig) -> list[tuple[PolicyEntry | MorlSpec, PolicyTraining | None]]:
    """Each policy (and the MORL baseline) with its resolved training settings (None for loaded policies)."""
    return [(entry, None if overrides is None else merged_training(config.training, overrides, where))
            for entry, overrides, where in policy_overrides(config)]


def policy_overrides(config: TrainConfig) -> list[tuple[PolicyEntry | MorlSpec, dict | None, str]]:
    """Each policy (and the MORL baseline) with its overrides of `training` (None for a loaded policy) and where
    they are in the config, for error messages."""
    out: list[tuple[PolicyEntry | MorlSpec, dict | None, str]] = [
        (entry, None if entry.path is not None else entry.training, f"{config.source}: policies[{index}].training")
        for index, entry in enumerate(config.policies)]
    if config.morl is not None:
        out.append((config.morl, config.morl.training, f"{config.source}: morl.training"))
    return out
