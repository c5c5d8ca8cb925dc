"""Command-line overrides of a YAML config: `--set training.max_steps=5 --set policies.0.reward=positive`.

Values are parsed as YAML scalars/flow collections (`5` → int, `[sigmoid, sft]` → list, `null` → None),
so an override means exactly what the same text would mean in the file.

A config file may also start from another: `extends: demo.yaml` (a path relative to the file) reads that config
first and lays this file's fields over it — mappings merged key by key, lists and values replaced — so a variant
states only what differs (configs/demo_ppo.yaml). `deep_merge` is the project's one deep merge: also how a
policy's `training:` overrides are laid over the stage's `training` block (training.py).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from lines.user_files import read_yaml_mapping

from ..errors import PipelineError


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


def read_config(path: str | Path, error: type[Exception] = PipelineError, _chain: tuple[Path, ...] = ()) -> dict:
    """A YAML config mapping with its `extends:` chain resolved (see the module docstring)."""
    path = Path(path)
    data = read_yaml_mapping(path, error)
    if "extends" not in data:
        return data
    parent = data.pop("extends")
    if not isinstance(parent, str) or not parent.strip():
        raise error(f"{path}: extends must be the path of another config file (relative to this one), "
                    f"got {parent!r}")
    target = path.parent / parent
    if not target.is_file():
        raise error(f"{path}: extends: '{parent}' does not exist next to this file ({target}); fix the path")
    chain = _chain + (path.resolve(),)
    if target.resolve() in chain:
        raise error(f"{path}: extends: '{parent}' leads back to {path} (a cycle); remove one of the extends")
    return deep_merge(read_config(target, error, chain), data)


def deep_merge(base: dict, update: dict) -> dict:
    """A new mapping: `base` with `update` laid over it, mappings merged key by key, anything else replaced. Neither
    input is modified, and the result shares no mutable value with them."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
