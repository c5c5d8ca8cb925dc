"""The one exception root for user errors, and how every entry point renders them.

Bad input or an unmet precondition anywhere in the project (a recipe, a run config, a reward, a checkpoint)
raises a subclass of `UserError` whose message is a single line saying what, where and how to fix it. Entry
points catch `UserError` alone, print `error: <message>` and exit with `EXIT_USER_ERROR`; anything else is a
bug and keeps its traceback.
"""
from __future__ import annotations

import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input or an unmet precondition; `str(err)` is one line meant for the user."""

    def __init__(self, message: object):
        # Library messages we wrap sometimes span several lines: the user gets one.
        super().__init__(" ".join(str(message).split()))


class LinesError(UserError):
    """Raised by the merge engine (recipes, checkpoints, layer maps)."""


def first_line(err: BaseException) -> str:
    """The first line of a library's error message (or its type), to quote inside a one-line `UserError`."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def report_user_error(exc: UserError) -> int:
    """Print `error: <message>` on stderr; returns the exit status entry points use."""
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_USER_ERROR
