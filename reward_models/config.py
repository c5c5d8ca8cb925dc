"""Rewards built by name from YAML-style dicts, validated with pydantic.

    rewards:
      - {name: positive, type: vader}
      - {name: long, type: length, min_words: 2}
      - {name: helpful, type: hf, path: runs/rm/helpful, mode: label, label: 1}
      - {name: faithful, type: hf, path: ..., mode: diff, positive: faithful, negative: hallucinated}
      - {name: armo, type: hf, path: ..., trust_remote_code: true, output: score, dtype: bfloat16}
      - {name: polite, type: callable, target: 'mypkg.rewards:polite'}
      - {name: kl, type: kl, base: runs/demo/base}
      - {name: ppl, type: perplexity, texts: data/heldout.txt}
      - {name: positive_z, type: vader, normalize: {method: zscore, reference: data/ref.jsonl}}

A bad entry is one line naming the entry, the field and the fix (`RewardError`).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .base import Reward
from .errors import RewardError

Label = Union[int, str]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    normalize: "NormalizeSpec | Literal['raw', 'zscore']" = "raw"

    def normalize_spec(self) -> "NormalizeSpec":
        return self.normalize if isinstance(self.normalize, NormalizeSpec) else NormalizeSpec(method=self.normalize)


class NormalizeSpec(BaseModel):
    """z-score statistics come from `reference` (a file of prompt/response rows) or, without one, from
    the reference responses the pipeline passes to `fit_normalizers` (θ0's samples)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["raw", "zscore"] = "zscore"
    reference: str | None = None
    prompt_field: str = "prompt"
    response_field: str = "response"


class VaderSpec(_Spec):
    type: Literal["vader"]


class LengthSpec(_Spec):
    type: Literal["length"]
    min_words: int = Field(2, ge=0)


class ConcisenessSpec(_Spec):
    type: Literal["conciseness"]
    form: Literal["negative", "inverse"] = "negative"


class DiversitySpec(_Spec):
    type: Literal["diversity"]
    method: Literal["distinct", "mtld"] = "distinct"
    mtld_threshold: float = Field(0.72, gt=0, lt=1)


class ReadabilitySpec(_Spec):
    type: Literal["readability"]
    lang: str = "en_US"


class KeywordsSpec(_Spec):
    type: Literal["keywords"]
    keywords: list[str] = Field(min_length=1)
    mode: Literal["any", "fraction", "count"] = "any"
    case_sensitive: bool = False


class HFSpec(_Spec):
    type: Literal["hf"]
    path: str
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
    separator: str = "\n"
    truncation_side: Literal["left", "right"] | None = None
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _labels_for_mode(self):
        if self.mode == "label" and self.label is None:
            raise ValueError("mode label needs `label` (an index, or a name from the model's id2label)")
        if self.mode == "diff" and (self.positive is None or self.negative is None):
            raise ValueError("mode diff needs `positive` and `negative` labels (score = positive − negative)")
        return self


class CallableSpec(_Spec):
    type: Literal["callable"]
    target: str = Field(pattern=r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")
    higher_is_better: bool = True
    batch_size: int | None = Field(None, gt=0)


class KLSpec(_Spec):
    type: Literal["kl"]
    base: str | None = None  # θ0 checkpoint; the pipeline may pass the loaded θ0 instead
    batch_size: int = Field(8, gt=0)
    device: str = "auto"
    dtype: str = "auto"
    max_length: int | None = Field(None, gt=0)


class PerplexitySpec(_Spec):
    type: Literal["perplexity"]
    texts: str
    field: str = "text"
    batch_size: int = Field(8, gt=0)
    max_length: int = Field(256, gt=1)


RewardSpec = Annotated[Union[VaderSpec, LengthSpec, ConcisenessSpec, DiversitySpec, ReadabilitySpec, KeywordsSpec,
                             HFSpec, CallableSpec, KLSpec, PerplexitySpec], Field(discriminator="type")]
_ADAPTER = TypeAdapter(RewardSpec)
REWARD_TYPES = ("vader", "length", "conciseness", "diversity", "readability", "keywords", "hf", "callable", "kl",
                "perplexity")


def validation_message(err: ValidationError, where: str) -> str:
    """The first pydantic error as one line: where, which field, what is wrong, how to fix."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if str(p) not in REWARD_TYPES]  # drop the union tag from the path
    field = ".".join(loc) or "(entry)"
    kind, msg = first["type"], first["msg"]
    if kind == "union_tag_invalid" or (kind == "union_tag_not_found"):
        return f"{where}: field 'type' is missing or unknown; use one of {', '.join(REWARD_TYPES)}"
    if kind == "extra_forbidden":
        return f"{where}: field '{field}' is not a setting of this reward type; remove it or check its spelling"
    if kind == "missing":
        return f"{where}: field '{field}' is required; add it"
    msg = msg.removeprefix("Value error, ")
    if not loc:  # a check across fields (e.g. mode vs label): the message names the fields itself
        return f"{where}: {msg}"
    return f"{where}: field '{field}': {msg}; fix that value"


def parse_reward_spec(config: dict, where: str = "reward") -> Any:
    if not isinstance(config, dict):
        raise RewardError(f"{where}: expected a mapping like {{name: positive, type: vader}}, got {config!r}")
    try:
        return _ADAPTER.validate_python(config)
    except ValidationError as err:
        raise RewardError(validation_message(err, where)) from None


def build_reward(config: dict | Any, where: str = "reward", base_model=None) -> Reward:
    """A ready Reward from one config dict (or parsed spec). `base_model` is θ0 for `kl` without `base`."""
    from . import callable_reward, hf_reward_model, policy_metrics, rules

    spec = config if isinstance(config, BaseModel) else parse_reward_spec(config, where)
    name = spec.name or spec.type
    if isinstance(spec, VaderSpec):
        reward: Reward = rules.VaderSentiment(name)
    elif isinstance(spec, LengthSpec):
        reward = rules.CharLength(name, min_words=spec.min_words)
    elif isinstance(spec, ConcisenessSpec):
        reward = rules.Conciseness(name, form=spec.form)
    elif isinstance(spec, DiversitySpec):
        reward = rules.LexicalDiversity(name, method=spec.method, mtld_threshold=spec.mtld_threshold)
    elif isinstance(spec, ReadabilitySpec):
        reward = rules.Readability(name, lang=spec.lang)
    elif isinstance(spec, KeywordsSpec):
        reward = rules.KeywordPresence(spec.keywords, name, mode=spec.mode, case_sensitive=spec.case_sensitive)
    elif isinstance(spec, HFSpec):
        reward = hf_reward_model.HFRewardModel(
            spec.path, name, mode=spec.mode, label=spec.label, positive=spec.positive, negative=spec.negative,
            output=spec.output, trust_remote_code=spec.trust_remote_code, max_length=spec.max_length,
            batch_size=spec.batch_size, device=spec.device, dtype=spec.dtype, input_format=spec.input_format,
            separator=spec.separator, truncation_side=spec.truncation_side, higher_is_better=spec.higher_is_better)
    elif isinstance(spec, CallableSpec):
        reward = callable_reward.CallableReward(spec.target, name, spec.higher_is_better, spec.batch_size)
    elif isinstance(spec, KLSpec):
        if spec.base is None and base_model is None:
            raise RewardError(f"{where}: field 'base' is required for kl unless the pipeline passes θ0; "
                              "set base to the SFT checkpoint directory")
        reward = policy_metrics.KLToBase(base_model if spec.base is None else None, spec.base, name,
                                         spec.batch_size, spec.device, spec.dtype, spec.max_length)
    elif isinstance(spec, PerplexitySpec):
        reward = policy_metrics.HeldOutPerplexity(path=spec.texts, field=spec.field, name=name,
                                                  batch_size=spec.batch_size, max_length=spec.max_length)
    else:  # pragma: no cover - the union above is exhaustive
        raise RewardError(f"{where}: unsupported reward type {spec.type}")
    _set_up_normalizer(reward, spec.normalize_spec(), where)
    return reward


def _set_up_normalizer(reward: Reward, spec: NormalizeSpec, where: str) -> None:
    reward.normalizer.method = spec.method
    if spec.method == "zscore" and spec.reference is not None:
        if reward.needs_policy:
            raise RewardError(f"{where}: a reference file cannot fit z-scores of '{reward.name}', which needs the "
                              "policy; drop normalize.reference and let the pipeline fit it on θ0's samples")
        from .records import column, read_records

        rows = read_records(spec.reference)
        prompts = column(rows, spec.prompt_field, spec.reference)
        responses = column(rows, spec.response_field, spec.reference)
        reward.normalizer.fit(reward.score(prompts, responses))


def build_rewards(configs: Sequence[dict], base_model=None) -> list[Reward]:
    """All rewards of a config's `rewards:` list; names must be unique (they key the score columns)."""
    if not configs:
        raise RewardError("rewards: the list is empty; add at least one reward such as {name: positive, type: vader}")
    rewards, seen = [], set()
    for index, config in enumerate(configs):
        label = config.get("name") if isinstance(config, dict) else None
        where = f"rewards[{index}]" + (f" ({label})" if label else "")
        reward = build_reward(config, where, base_model=base_model)
        if reward.name in seen:
            raise RewardError(f"{where}: reward name '{reward.name}' is used twice; give each reward a unique name")
        seen.add(reward.name)
        rewards.append(reward)
    return rewards


