"""Reward types, declared once each: schema, whether it is a metric of the policy, how it builds, what files its
scores depend on.

    rewards:
      - {name: positive, type: vader}
      - {name: long, type: length, min_words: 2}
      - {name: helpful, type: hf, path: runs/rm/helpful, mode: label, label: 1}
      - {name: faithful, type: hf, path: ..., mode: diff, positive: faithful, negative: hallucinated}
      - {name: helpful, type: hf, path: Ray2333/gpt2-large-helpful-reward_model}   # hh-rlhf format, known by id
      - {name: local, type: hf, path: models/rm, format: hh-rlhf}                # a local copy: name its format
      - {name: mine, type: hf, path: ..., input_format: pair, prompt_template: "Q: {prompt}\n", response_template: "A: {response}"}
      - {name: armo, type: hf, path: RLHFlow/ArmoRM-Llama3-8B-v0.1, trust_remote_code: true, dtype: bfloat16}
      - {name: polite, type: callable, target: 'mypkg.rewards:polite'}
      - {name: kl, type: kl, base: runs/demo/base}
      - {name: ppl, type: perplexity, texts: data/heldout.txt}
      - {name: positive_z, type: vader, normalize: {method: zscore, reference: data/ref.jsonl}}

A reward type is one `RewardSpec` subclass decorated with `@reward_type`: its pydantic fields are the schema (the
`type` literal names it), `build` makes the `Reward`, `is_metric` says it is computed from the policy's weights
(KL, perplexity: never a training signal), and `content_files` lists the local files whose content its scores
depend on (cache keys hash their content, not their paths). `name` defaults to the type. A bad entry is one line
naming the entry and the field (`RewardError`); inside a larger config, `RewardSpecField` validates an entry
in place so the config's own error line names the field.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Sequence, Union

from pydantic import (BaseModel, Field, PlainSerializer, PlainValidator, ValidationError, field_validator,
                      model_validator)

from lines.config_errors import describe_validation_error
from lines.fingerprints import fingerprint
from lines.models import looks_like_hub_id, resolve_device, resolve_dtype
from lines.safe_paths import check_path_component
from lines.schema import StrictModel

from .base import Reward
from .callable_reward import CallableReward, import_target
from .errors import RewardError
from .hf_reward_model import HFRewardModel
from .policy_metrics import HeldOutKL, HeldOutPerplexity, KLToBase
from .records import column, read_records
from .rm_formats import DEFAULT_FORMAT, format_names, format_settings, known_model
from .classifiers import ProfanityProbability
from .rules import (CharLength, Conciseness, KeywordPresence, LexiconCount, LexicalDiversity, Readability,
                    VaderSentiment)

log = logging.getLogger(__name__)
Label = Union[int, str]
REWARD_TYPES: dict[str, type["RewardSpec"]] = {}


def reward_type(cls: type["RewardSpec"]) -> type["RewardSpec"]:
    """Register a spec class under the value of its `type` literal (a name is registered once)."""
    name = cls.model_fields["type"].annotation.__args__[0]
    if name in REWARD_TYPES:
        raise ValueError(f"reward type {name!r} is already registered (by {REWARD_TYPES[name].__name__})")
    REWARD_TYPES[name] = cls
    return cls


class NormalizeSpec(StrictModel):
    """z-score statistics come from `reference` (a file of prompt/response rows) or, without one, from
    the reference responses the pipeline passes to `fit_normalizers` (θ0's samples)."""

    method: Literal["raw", "zscore"] = "zscore"
    reference: str | None = None
    prompt_field: str = "prompt"
    response_field: str = "response"


class RewardSpec(StrictModel):
    """Fields every reward type has. Subclasses add `type: Literal[...]`, their settings and `build`."""

    is_metric: ClassVar[bool] = False

    type: str
    name: str | None = None
    normalize: NormalizeSpec | Literal["raw", "zscore"] = "raw"

    @model_validator(mode="after")
    def _default_name(self):
        if self.name is None:
            self.name = self.type
        # A reward's name keys a score column and names its policy's directory (policies/<name>/).
        check_path_component(self.name)
        return self

    def normalize_spec(self) -> NormalizeSpec:
        return self.normalize if isinstance(self.normalize, NormalizeSpec) else NormalizeSpec(method=self.normalize)

    def build(self, base_model=None) -> Reward:  # pragma: no cover - every registered type overrides it
        raise NotImplementedError

    def wants_base_model(self) -> bool:
        """Whether `build` needs θ0 loaded by the pipeline (a KL metric without its own `base`)."""
        return False

    def check_available(self) -> None:
        """What this machine must offer to build the reward (a device, an importable function), checked with the
        config, before any work; raises a one-line `UserError`."""

    def checkpoints(self) -> list[str]:
        """Models the reward loads: local directories or hub ids (checked with the config)."""
        return []

    def content_files(self) -> list[str]:
        """Local files and directories whose content the scores depend on."""
        reference = self.normalize_spec().reference
        return [reference] if self.normalize_spec().method == "zscore" and reference else []


@reward_type
class VaderSpec(RewardSpec):
    type: Literal["vader"]

    def build(self, base_model=None) -> Reward:
        return VaderSentiment(self.name)


@reward_type
class LengthSpec(RewardSpec):
    type: Literal["length"]
    min_words: int = Field(2, ge=0)

    def build(self, base_model=None) -> Reward:
        return CharLength(self.name, min_words=self.min_words)


@reward_type
class ConcisenessSpec(RewardSpec):
    type: Literal["conciseness"]
    form: Literal["negative", "inverse"] = "negative"

    def build(self, base_model=None) -> Reward:
        return Conciseness(self.name, form=self.form)


@reward_type
class DiversitySpec(RewardSpec):
    type: Literal["diversity"]
    method: Literal["distinct", "mtld"] = "distinct"
    mtld_threshold: float = Field(0.72, gt=0, lt=1)

    def build(self, base_model=None) -> Reward:
        return LexicalDiversity(self.name, method=self.method, mtld_threshold=self.mtld_threshold)


@reward_type
class ReadabilitySpec(RewardSpec):
    type: Literal["readability"]
    lang: str = "en_US"

    def build(self, base_model=None) -> Reward:
        return Readability(self.name, lang=self.lang)


@reward_type
class KeywordsSpec(RewardSpec):
    type: Literal["keywords"]
    keywords: list[str] = Field(min_length=1)
    mode: Literal["any", "fraction", "count"] = "any"
    case_sensitive: bool = False

    def build(self, base_model=None) -> Reward:
        return KeywordPresence(self.keywords, self.name, mode=self.mode, case_sensitive=self.case_sensitive)


@reward_type
class LexiconSpec(RewardSpec):
    type: Literal["lexicon"]
    min_valence: float = 1.0

    def build(self, base_model=None) -> Reward:
        return LexiconCount(self.name, min_valence=self.min_valence)


@reward_type
class ProfanitySpec(RewardSpec):
    type: Literal["profanity"]

    def check_available(self) -> None:
        ProfanityProbability.check_available()

    def build(self, base_model=None) -> Reward:
        return ProfanityProbability(self.name)


@reward_type
class HFSpec(RewardSpec):
    """A sequence-classification RM. How it reads a pair (`input_format`, `prompt_template`, `response_template`,
    `separator`) is, in order: what this entry states; the format it names with `format` (a name in
    reward_models/known_formats.json: hh-rlhf, text-pair, chat); the format known for its `path`; else the default
    (`input_format: auto`: the RM's chat template if its tokenizer has one, else prompt + separator + response),
    which `build` and `--check` say out loud. Validation writes the resolved format into the fields, so the
    resolved config and cache keys carry the format actually used."""

    type: Literal["hf"]
    path: str
    format: str | None = None
    mode: Literal["single", "label", "diff"] = "single"
    label: Label | None = None
    positive: Label | None = None
    negative: Label | None = None
    output: str = "logits"
    trust_remote_code: bool = False
    max_length: int | None = Field(None, gt=0)
    batch_size: int = Field(8, gt=0)
    device: str = "auto"
    dtype: str = "auto"
    input_format: Literal["auto", "chat", "pair", "concat"] = "auto"
    prompt_template: str | None = None    # e.g. "\n\nHuman: {prompt} \n\nAssistant:"
    response_template: str | None = None  # e.g. " {response}"
    separator: str = "\n"
    truncation_side: Literal["left", "right"] | None = None
    higher_is_better: bool = True

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        if value is not None and value not in format_names():
            raise ValueError(f"unknown format '{value}'; use one of {', '.join(format_names())} (or state "
                             "input_format, prompt_template and response_template)")
        return value

    @field_validator("prompt_template")
    @classmethod
    def _prompt_slot(cls, value: str | None) -> str | None:
        if value is not None and value.count("{prompt}") != 1:
            raise ValueError("prompt_template must contain {prompt} exactly once, e.g. "
                             "'\\n\\nHuman: {prompt} \\n\\nAssistant:'")
        return value

    @field_validator("response_template")
    @classmethod
    def _response_slot(cls, value: str | None) -> str | None:
        if value is not None and value.count("{response}") != 1:
            raise ValueError("response_template must contain {response} exactly once, e.g. ' {response}'")
        return value

    @model_validator(mode="after")
    def _labels_for_mode(self):
        if self.mode == "label" and self.label is None:
            raise ValueError("mode label needs `label` (an index, or a name from the model's id2label)")
        if self.mode == "diff" and (self.positive is None or self.negative is None):
            raise ValueError("mode diff needs `positive` and `negative` labels (score = positive − negative)")
        return self

    @model_validator(mode="after")
    def _resolve_format(self):
        stated = set(self.model_fields_set)
        known = known_model(self.path)
        name = self.format or (known.format if known is not None else None)
        if name is not None:
            for field, value in format_settings(name).items():
                if field not in stated:
                    setattr(self, field, value)
            self.format = name
        if known is not None:
            if known.output and "output" not in stated:
                self.output = known.output
            if known.trust_remote_code and not self.trust_remote_code:
                raise ValueError(f"'{self.path}' runs its own model code from its repository; set "
                                 "trust_remote_code: true if you trust that code")
        return self

    @property
    def uses_default_format(self) -> bool:
        """Nothing says how this RM reads a pair (not stated, not named, not a known id)."""
        return self.input_format == "auto" and self.prompt_template is None and self.response_template is None

    def describe_format(self) -> str:
        """One line: the format this RM reads and where that comes from."""
        if self.uses_default_format:
            return f"the default, {DEFAULT_FORMAT}: '{self.path}' is not a known reward model and states no format"
        known = known_model(self.path)
        origin = (f"known for {known.key}" if known is not None and self.format == known.format
                  else f"named format {self.format}" if self.format else "stated")
        parts = [self.input_format]
        if self.prompt_template is not None:
            parts.append(f"prompt_template {self.prompt_template!r}")
        if self.response_template is not None:
            parts.append(f"response_template {self.response_template!r}")
        if self.input_format == "concat":
            parts.append(f"separator {self.separator!r}")
        return f"{', '.join(parts)} ({origin})"

    def check_available(self) -> None:
        resolve_dtype(self.dtype, resolve_device(self.device))

    def build(self, base_model=None) -> Reward:
        if self.uses_default_format:
            log.warning("reward '%s': input format: %s; set `format` or input_format/prompt_template/"
                        "response_template to the format the model was trained with", self.name,
                        self.describe_format())
        return HFRewardModel(
            self.path, self.name, mode=self.mode, label=self.label, positive=self.positive, negative=self.negative,
            output=self.output, trust_remote_code=self.trust_remote_code, max_length=self.max_length,
            batch_size=self.batch_size, device=self.device, dtype=self.dtype, input_format=self.input_format,
            separator=self.separator, prompt_template=self.prompt_template, response_template=self.response_template,
            truncation_side=self.truncation_side, higher_is_better=self.higher_is_better)

    def checkpoints(self) -> list[str]:
        return [self.path]

    def content_files(self) -> list[str]:
        # A hub id is known by its name only (no network to ask for its revision); a local model by its files.
        return super().content_files() + ([] if looks_like_hub_id(self.path) else [self.path])


@reward_type
class CallableSpec(RewardSpec):
    type: Literal["callable"]
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")
    higher_is_better: bool = True
    batch_size: int | None = Field(None, gt=0)

    def check_available(self) -> None:
        import_target(self.target)

    def build(self, base_model=None) -> Reward:
        return CallableReward(self.target, self.name, self.higher_is_better, self.batch_size)

    def content_files(self) -> list[str]:
        # The module's source: edited code must not be served scores from the old code.
        module = self.target.partition(":")[0] if ":" in self.target else self.target.rpartition(".")[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        return super().content_files() + ([origin] if origin and Path(origin).is_file() else [])


class _AgainstThetaZero(RewardSpec):
    """Fields of metrics that compare the policy with θ0: its checkpoint (or θ0 passed by the pipeline), where it
    runs and in which dtype."""

    is_metric: ClassVar[bool] = True
    base: str | None = None  # θ0 checkpoint; the pipeline may pass the loaded θ0 instead
    batch_size: int = Field(8, gt=0)
    device: str = "auto"
    dtype: str = "auto"

    def theta_zero(self, base_model):
        if self.base is None and base_model is None:
            raise RewardError(f"reward '{self.name}': field 'base' is required for {self.type} unless the pipeline "
                              "passes θ0; set base to the SFT checkpoint directory")
        return base_model if self.base is None else None

    def wants_base_model(self) -> bool:
        return self.base is None

    def check_available(self) -> None:
        resolve_dtype(self.dtype, resolve_device(self.device))

    def checkpoints(self) -> list[str]:
        return [self.base] if self.base else []

    def content_files(self) -> list[str]:
        return super().content_files() + ([self.base] if self.base and not looks_like_hub_id(self.base) else [])


class _OnTexts(RewardSpec):
    """Fields of metrics computed on a fixed file of held-out texts (one value per text)."""

    is_metric: ClassVar[bool] = True
    texts: str
    field: str = "text"
    batch_size: int = Field(8, gt=0)
    max_length: int = Field(256, gt=1)

    def content_files(self) -> list[str]:
        return super().content_files() + [self.texts]


@reward_type
class KLSpec(_AgainstThetaZero):
    """KL(π ‖ π0) of each sampled response (exact per-token terms along it)."""

    type: Literal["kl"]
    max_length: int | None = Field(None, gt=0)

    def build(self, base_model=None) -> Reward:
        return KLToBase(self.theta_zero(base_model), self.base, self.name, self.batch_size, self.device, self.dtype,
                        self.max_length)


@reward_type
class PerplexitySpec(_OnTexts):
    """Perplexity of the policy on each held-out text."""

    type: Literal["perplexity"]

    def build(self, base_model=None) -> Reward:
        return HeldOutPerplexity(path=self.texts, field=self.field, name=self.name, batch_size=self.batch_size,
                                 max_length=self.max_length)


@reward_type
class HeldOutKLSpec(_OnTexts, _AgainstThetaZero):
    """Mean per-token KL(π ‖ π0) along each held-out text."""

    type: Literal["heldout_kl"]

    def build(self, base_model=None) -> Reward:
        return HeldOutKL(self.theta_zero(base_model), self.base, self.device, self.dtype, path=self.texts,
                         field=self.field, name=self.name, batch_size=self.batch_size, max_length=self.max_length)


# -- validation ------------------------------------------------------------------------------------------------

class _TypeTag(BaseModel):
    """Only the `type` field, so an unknown or missing type is reported at `<entry>.type`. Not strict: the entry's
    other fields are checked by its type's own schema."""

    type: str

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in REWARD_TYPES:
            raise ValueError(f"unknown reward type '{value}'; use one of {', '.join(REWARD_TYPES)}")
        return value


def validate_reward_spec(value: Any) -> RewardSpec:
    """A spec from a mapping (or an existing spec); pydantic errors keep their field paths for the caller."""
    if isinstance(value, RewardSpec):
        return value
    if not isinstance(value, dict):
        raise ValueError("a reward is a mapping like {name: positive, type: vader}")
    tag = _TypeTag.model_validate({"type": value.get("type")} if "type" in value else {})
    return REWARD_TYPES[tag.type].model_validate(value)


# A reward entry inside a larger config (the run config, the training config): validated and dumped in place.
RewardSpecField = Annotated[Any, PlainValidator(validate_reward_spec),
                            PlainSerializer(lambda spec: spec.model_dump(mode="json"), return_type=dict)]


def parse_reward_spec(config: Any, where: str = "reward") -> RewardSpec:
    try:
        return validate_reward_spec(config)
    except ValidationError as err:
        raise RewardError(describe_validation_error(err, where, setting="setting of this reward type")) from None
    except ValueError as err:
        raise RewardError(f"{where}: {err}") from None


def check_unique_names(specs: Sequence[RewardSpec], where: str = "rewards") -> None:
    names = [spec.name for spec in specs]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise RewardError(f"{where}[{index}]: reward name '{name}' is used twice; give each reward a unique name")


# -- building and identity ---------------------------------------------------------------------------------------

def build_reward(config: dict | RewardSpec, where: str = "reward", base_model=None) -> Reward:
    """A ready Reward from one config dict (or parsed spec). `base_model` is θ0 for `kl` without `base`."""
    spec = parse_reward_spec(config, where)
    reward = spec.build(base_model)
    _set_up_normalizer(reward, spec.normalize_spec(), where)
    return reward


def build_rewards(configs: Sequence[dict | RewardSpec], base_model=None) -> list[Reward]:
    """All rewards of a config's `rewards:` list; names must be unique (they key the score columns)."""
    if not configs:
        raise RewardError("rewards: the list is empty; add at least one reward such as {name: positive, type: vader}")
    specs = [parse_reward_spec(config, f"rewards[{index}]") for index, config in enumerate(configs)]
    check_unique_names(specs)
    return [build_reward(spec, f"rewards[{index}] ({spec.name})", base_model) for index, spec in enumerate(specs)]


def reward_identity(spec: RewardSpec, memo_file: Path | None = None) -> dict:
    """What a score depends on: the spec and the content of every file it names (for cache keys)."""
    files = {}
    for path in spec.content_files():
        if not Path(path).expanduser().exists():
            raise RewardError(f"reward '{spec.name}': '{path}' does not exist; check the path in the config")
        files[path] = fingerprint(path, memo_file)
    return {"spec": spec.model_dump(mode="json"), "files": files}


def _set_up_normalizer(reward: Reward, spec: NormalizeSpec, where: str) -> None:
    reward.normalizer.method = spec.method
    if spec.method == "zscore" and spec.reference is not None:
        if reward.needs_policy:
            raise RewardError(f"{where}: a reference file cannot fit z-scores of '{reward.name}', which needs the "
                              "policy; drop normalize.reference and let the pipeline fit it on θ0's samples")
        rows = read_records(spec.reference)
        prompts = column(rows, spec.prompt_field, spec.reference)
        responses = column(rows, spec.response_field, spec.reference)
        reward.normalizer.fit(reward.score(prompts, responses))
