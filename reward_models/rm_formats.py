"""Which input format a reward model was trained to read, as data: `known_formats.json` beside this file.

A reward model scores text laid out as it saw it in training; the same prompt and response laid out otherwise give
numbers that look fine and mean little. The registry names a few formats (hh-rlhf, text-pair, chat) and maps hub
ids of widely used open RMs (a key with `*` is a glob) to one of them, plus what their own code needs (`output`,
`trust_remote_code`). `HFSpec` in config.py applies it: settings stated in a reward's config win, then a format
named with `format:`, then the format known for its `path`; an RM in none of these reads the documented default
(see `DEFAULT_FORMAT`) and the pipeline says so.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REGISTRY_FILE = Path(__file__).with_name("known_formats.json")
FORMAT_FIELDS = ("input_format", "prompt_template", "response_template")
DEFAULT_FORMAT = ("its tokenizer's chat template when it has one, else prompt + separator + response "
                  "(input_format: auto)")


@dataclass(frozen=True)
class KnownModel:
    key: str                  # the registry key that matched: the id itself or a glob
    format: str               # a name in the registry's `formats`
    output: str | None        # the model output field holding the score, when not `logits`
    trust_remote_code: bool   # the model runs its own code from its repository
    source: str               # where the facts come from (its model card)


@lru_cache(maxsize=1)
def registry() -> dict:
    return json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))


def format_names() -> list[str]:
    return list(registry()["formats"])


def format_settings(name: str) -> dict:
    """{input_format, prompt_template, response_template} of a named format (missing keys: not set)."""
    entry = registry()["formats"][name]
    return {field: entry[field] for field in FORMAT_FIELDS if field in entry}


def known_model(model_id: str) -> KnownModel | None:
    """The registry entry for a hub id: an exact key first, then the first glob that matches."""
    models = registry()["models"]
    key = model_id if model_id in models else next(
        (k for k in models if "*" in k and fnmatch.fnmatchcase(model_id, k)), None)
    if key is None:
        return None
    entry = models[key]
    return KnownModel(key, entry["format"], entry.get("output"), bool(entry.get("trust_remote_code", False)),
                      entry.get("source", ""))


def fill(template: str | None, placeholder: str, text: str) -> str:
    """`template` with its one `placeholder` replaced by `text` (plain replacement: other braces stay as written)."""
    return text if template is None else template.replace(placeholder, text)
