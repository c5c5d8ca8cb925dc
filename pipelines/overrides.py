"""Command-line overrides of a YAML config: `--set training.max_steps=5 --set policies.0.reward=positive`.

Values are parsed as YAML scalars/flow collections (`5` → int, `[sigmoid, sft]` → list, `null` → None),
so an override means exactly what the same text would mean in the file.
"""
from __future__ import annotations

from typing import Any

import yaml

from .errors import PipelineError


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise PipelineError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. --set training.max_steps=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise PipelineError(f"--set {text!r}: the value is not valid YAML ({err.__class__.__name__}); "
                            "quote it") from None
    return key.strip().split("."), value


def set_path(config: dict, path: list[str], value: Any, text: str) -> None:
    node: Any = config
    for depth, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = node[_index(node, part, text)]
            continue
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise PipelineError(f"--set {text!r}: '{'.'.join(path[:depth + 1])}' is a value, not a section")
    last = path[-1]
    if isinstance(node, list):
        node[_index(node, last, text)] = value
    else:
        node[last] = value


def _index(node: list, part: str, text: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise PipelineError(f"--set {text!r}: '{part}' is not an index of a list with {len(node)} entries")
    return int(part)


def apply_overrides(config: dict, overrides: list[str]) -> dict:
    """`config` with each KEY=VALUE applied in order (the dict is modified and returned)."""
    for text in overrides:
        path, value = parse_override(text)
        set_path(config, path, value, text)
    return config
