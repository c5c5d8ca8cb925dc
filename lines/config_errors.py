"""One line from a pydantic validation error: where, which field, what is wrong, how to fix it.

Every config of the project (merge recipes, the main job, training, generation, prompts) reports a bad field
through this, so messages read the same everywhere.
"""
from __future__ import annotations

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
