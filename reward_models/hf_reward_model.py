"""Reward models that are Hugging Face sequence classifiers (`AutoModelForSequenceClassification`).

Covers the RMs of the rewarded-soups literature by configuration alone (the input formats of known hub ids come
from `known_formats.json`, see rm_formats.py):
- OpenAssistant deberta RMs: `mode: single`, `input_format: pair` (they were trained on text pairs);
- GPT-2 helpful/harmless RMs trained on hh-rlhf: `mode: single`, `input_format: pair` with the hh-rlhf prompt
  template (no pad token: EOS is used, see `ensure_pad_token`);
- classifiers such as a faithfulness model: `mode: diff, positive: faithful, negative: hallucinated`,
  or `mode: label, label: POSITIVE` (labels by index or by name from config.id2label);
- ArmoRM-style Llama RMs with custom code and output: `trust_remote_code: true, output: score`
  (`output` names an attribute or key of the model output, dotted for nested ones; default `logits`;
  a 1-D field is one column, a 2-D field [batch, k] is columns `label` can index).

Truncation: pairs longer than `max_length` tokens are truncated on the tokenizer's truncation side
(right by default, so the end of the response is cut); how many were cut is logged per call and kept in
`last_truncated`.
Empty responses are scored as they are: the RM sees the prompt with an empty assistant turn (chat), an
empty second text (pair) or the prompt plus separator (concat) — deterministic and finite.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from lines.errors import UserError, first_line
from lines.models import looks_like_hub_id, refuse_remote_code, resolve_device, resolve_dtype

from .base import Reward
from .errors import RewardError
from .text_format import InputFormat, resolve_input_format, rm_text
from .tokenizer_setup import ensure_pad_token

log = logging.getLogger(__name__)

Mode = Literal["single", "label", "diff"]


def load_sequence_classifier(path: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool,
                             reward_name: str):
    """Model and tokenizer from a local directory (or a hub id for users with hub access), as one line on failure."""
    # deferred: transformers is heavy and only the HF reward model needs it
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not looks_like_hub_id(path):
        local = Path(path).expanduser()
        if not local.is_dir():
            raise RewardError(f"reward '{reward_name}': reward model path '{path}' does not exist; "
                              "set `path` to a directory holding config.json and the weights")
        path = str(local)
        try:
            refuse_remote_code(local, f"reward '{reward_name}'", trust_remote_code)
        except UserError as err:
            raise RewardError(str(err)) from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype,
                                                                   trust_remote_code=trust_remote_code)
    except (OSError, ValueError, pickle.UnpicklingError) as err:  # pickle weights load with weights_only=True
        raise RewardError(f"reward '{reward_name}': cannot load reward model '{path}' ({first_line(err)}); give a local "
                          "checkpoint directory, or a hub id with network access (and trust_remote_code: true "
                          "for custom architectures)") from None
    return model.to(device).eval(), tokenizer


def select_output(outputs, field: str, reward_name: str) -> torch.Tensor:
    """The tensor at `field` (attribute or key, dotted for nesting) as [batch, columns] float."""
    value = outputs
    for part in field.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif hasattr(value, part) and getattr(value, part) is not None:
            value = getattr(value, part)
        else:
            available = list(outputs.keys()) if hasattr(outputs, "keys") else [a for a in dir(outputs) if not a.startswith("_")]
            raise RewardError(f"reward '{reward_name}': the model output has no field '{field}'; "
                              f"set `output` to one of {available}")
    if not torch.is_tensor(value):
        raise RewardError(f"reward '{reward_name}': output field '{field}' is a {type(value).__name__}, not a tensor")
    value = value.float()
    if value.ndim == 1:
        value = value[:, None]
    if value.ndim != 2:
        raise RewardError(f"reward '{reward_name}': output field '{field}' has shape {tuple(value.shape)}; "
                          "expected [batch] or [batch, labels]")
    return value


class HFRewardModel(Reward):
    """Scores pairs with a sequence classifier; see the module docstring for modes and formats."""

    def __init__(self, path: str | None = None, name: str = "rm", mode: Mode = "single",
                 label: int | str | None = None, positive: int | str | None = None,
                 negative: int | str | None = None, output: str = "logits", trust_remote_code: bool = False,
                 max_length: int | None = None, batch_size: int = 8, device: str = "auto", dtype: str = "auto",
                 input_format: InputFormat = "auto", separator: str = "\n", prompt_template: str | None = None,
                 response_template: str | None = None, truncation_side: Literal["left", "right"] | None = None, higher_is_better: bool = True,
                 model=None, tokenizer=None):
        super().__init__(name)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if model is None or tokenizer is None:
            if path is None:
                raise RewardError(f"reward '{name}': an hf reward needs `path` (a local checkpoint or a hub id)")
            model, tokenizer = load_sequence_classifier(path, self.device, self.dtype, trust_remote_code, name)
        else:
            model = model.to(self.device, self.dtype).eval()
        self.model, self.tokenizer = model, tokenizer
        self.pad_action = ensure_pad_token(tokenizer, model)
        if truncation_side is not None:
            tokenizer.truncation_side = truncation_side
        self.mode, self.output, self.batch_size = mode, output, batch_size
        self.higher_is_better = higher_is_better
        self.input_format = resolve_input_format(tokenizer, input_format)
        if self.input_format == "chat" and not getattr(tokenizer, "chat_template", None):
            raise RewardError(f"reward '{name}': input_format chat needs a tokenizer with a chat template; "
                              "use input_format: concat or pair")
        self.separator = separator
        self.prompt_template, self.response_template = prompt_template, response_template
        self.max_length = max_length or self._default_max_length()
        self.id2label = {int(k): str(v) for k, v in (getattr(model.config, "id2label", None) or {}).items()}
        self.columns = self._resolve_columns(label, positive, negative)
        if output == "logits":  # the label count is known before any forward pass
            self._check_columns(int(getattr(model.config, "num_labels", 1)))
        self.last_truncated = 0

    # ----------------------------------------------------------------------------------------------
    def _default_max_length(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None)
        if limit and limit < 1_000_000:  # tokenizers without a limit report a huge sentinel
            return int(limit)
        return int(getattr(self.model.config, "max_position_embeddings", 512) or 512)

    def _label_index(self, label: int | str, field: str) -> int:
        if isinstance(label, int) or (isinstance(label, str) and label.isdigit() and label not in self.id2label.values()):
            return int(label)
        for index, name in self.id2label.items():
            if name == label:
                return index
        raise RewardError(f"reward '{self.name}': {field} '{label}' is not a label of this model "
                          f"(labels: {sorted(self.id2label.values())}); use a label name or an index")

    def _resolve_columns(self, label, positive, negative) -> tuple[int, ...]:
        if self.mode == "single":
            return (0,)
        if self.mode == "label":
            if label is None:
                raise RewardError(f"reward '{self.name}': mode label needs `label` (index or name from id2label)")
            return (self._label_index(label, "label"),)
        if self.mode == "diff":
            if positive is None or negative is None:
                raise RewardError(f"reward '{self.name}': mode diff needs `positive` and `negative` labels "
                                  "(score = logit[positive] − logit[negative])")
            return (self._label_index(positive, "positive"), self._label_index(negative, "negative"))
        raise RewardError(f"reward '{self.name}': unknown mode '{self.mode}'; use single, label or diff")

    def _check_columns(self, n: int) -> None:
        labels = f"{n} output{'s' if n != 1 else ''}" + (f" ({', '.join(self.id2label[i] for i in sorted(self.id2label))})"
                                                        if self.id2label and n > 1 else "")
        if self.mode == "single" and n != 1:
            raise RewardError(f"reward '{self.name}': mode single needs a model with one output but it has {labels}; "
                              "use mode: label with `label`, or mode: diff with `positive` and `negative`")
        if self.mode == "diff" and n < 2:
            raise RewardError(f"reward '{self.name}': mode diff needs at least two labels but the model has {labels}; "
                              "use mode: single")
        bad = [c for c in self.columns if c >= n or c < 0]
        if bad:
            raise RewardError(f"reward '{self.name}': label index {bad[0]} is out of range for a model with {labels}")

    # ----------------------------------------------------------------------------------------------
    def _encode(self, texts: list, truncate: bool):
        kwargs = dict(add_special_tokens=self.input_format != "chat")
        if truncate:
            kwargs.update(truncation=True, max_length=self.max_length)
        if self.input_format == "pair":
            return self.tokenizer([t[0] for t in texts], [t[1] for t in texts], **kwargs)["input_ids"]
        return self.tokenizer(texts, **kwargs)["input_ids"]

    @torch.inference_mode()
    def _forward(self, batch_ids: list[list[int]]) -> torch.Tensor:
        width = max(len(ids) for ids in batch_ids)
        pad = self.tokenizer.pad_token_id
        # Right padding: sequence-classification heads pool the last non-pad token, and absolute position
        # embeddings (GPT-2, deberta) then see the same positions as an unpadded forward pass.
        input_ids = torch.full((len(batch_ids), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch_ids), width), dtype=torch.long)
        for row, ids in enumerate(batch_ids):
            input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention[row, :len(ids)] = 1
        outputs = self.model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device))
        return select_output(outputs, self.output, self.name)

    def _score(self, prompts: list[str], responses: list[str], policy) -> Sequence[float]:
        texts = [rm_text(self.tokenizer, p, r, self.input_format, self.separator, self.prompt_template,
                         self.response_template) for p, r in zip(prompts, responses)]
        full_lengths = [len(ids) for ids in self._encode(texts, truncate=False)]
        encoded = self._encode(texts, truncate=True)
        self.last_truncated = sum(n > self.max_length for n in full_lengths)
        if self.last_truncated:
            log.warning("reward '%s': %d of %d inputs longer than max_length=%d tokens were truncated (%s side)",
                        self.name, self.last_truncated, len(texts), self.max_length, self.tokenizer.truncation_side)
        fallback = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.tokenizer.pad_token_id
        encoded = [ids if ids else [fallback] for ids in encoded]  # an all-empty input still gets one token
        # Longest first: batches of similar length waste little padding; scores go back to input order.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        scores = np.zeros(len(encoded), dtype=np.float64)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=f"score {self.name}", leave=False, disable=len(batches) < 4):
            values = self._forward([encoded[i] for i in batch])
            self._check_columns(values.shape[1])
            if self.mode == "diff":
                column = values[:, self.columns[0]] - values[:, self.columns[1]]
            else:
                column = values[:, self.columns[0]]
            scores[batch] = column.double().cpu().numpy()
        return scores

    def describe(self) -> dict:
        return {**super().describe(), "mode": self.mode, "columns": list(self.columns), "output": self.output,
                "input_format": self.input_format, "prompt_template": self.prompt_template,
                "response_template": self.response_template, "max_length": self.max_length, "pad_token": self.pad_action}
