"""One line from a pydantic validation error: where, which field, what is wrong, how to fix it.

Every config of the project (merge recipes, the main job, training, generation, prompts) reports a bad field
through this, so messages read the same everywhere.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError


def error_field(error: dict) -> str:
    """The dotted path of a pydantic error, without the validator entries pydantic inserts."""
    return ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))


def first_error(exc: ValidationError, setting: str = "setting") -> str:
    """The first problem, e.g. "field 'models.1.weight': must be a finite number"."""
    error = exc.errors()[0]
    field, kind = error_field(error), error["type"]
    msg = error["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"field '{field}' is not a {setting} here; remove it or check its spelling"
    if kind == "missing":
        return f"field '{field}' is required; add it"
    if not field:
        return msg
    # Messages of this project's validators already say how to fix; pydantic's own say only what is wrong.
    return f"field '{field}': {msg}" + ("" if ";" in msg else "; fix that value")


def describe_validation_error(exc: ValidationError, source: str, setting: str = "setting") -> str:
    """`SOURCE: <first problem>`, noting how many more there are."""
    more = len(exc.errors()) - 1
    return f"{source}: {first_error(exc, setting)}" + (f" (and {more} more problems)" if more > 0 else "")


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
