"""The user's files read with one-line errors: a YAML config that must hold a mapping, and text that must be UTF-8.

A missing file, bad YAML syntax, another shape or bytes that are not UTF-8 each give one line naming the file (and
line and column where there is one) and how to fix it, raised as the caller's own error type.
"""
from __future__ import annotations

from pathlib import Path

import yaml


def read_yaml_mapping(path, error: type[Exception], what: str = "config") -> dict:
    """A YAML file that must hold a mapping; a missing file, bad syntax or another shape is one `error` line."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} file '{path}' does not exist; give the path of a YAML file")
    try:
        data = yaml.safe_load(read_utf8(path, error))
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise error(f"{path}: not valid YAML{where} ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{path}: a {what} is a YAML mapping of fields, got {type(data).__name__}")
    return data


def read_utf8(path, error: type[Exception]) -> str:
    """A text file's content; bytes that are not UTF-8 are one `error` line naming the file, line and column."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise error(f"{path}:{line}: byte 0x{data[err.start]:02x} at column {column} is not valid UTF-8; "
                    "re-save the file as UTF-8") from None
