"""The one exception root for user errors, and how every entry point renders them.

Bad input or an unmet precondition anywhere in the project (a recipe, a run config, a reward, a checkpoint)
raises a subclass of `UserError` whose message is a single line saying what, where and how to fix it. Entry
points catch `UserError` alone, print `error: <message>` and exit with `EXIT_USER_ERROR`; anything else is a
bug and keeps its traceback.

Interrupts are rendered here too: inside `stop_on_signals()` SIGINT (Ctrl-C) and SIGTERM (what a scheduler sends
before it kills) raise `Interrupted`, which unwinds the job like any error (temporaries removed, finished records
kept); the entry point prints one line (`report_interrupted`) and exits 130 or 143, and the same command resumes.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator, NoReturn

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


RESUME_LINE = "interrupted; run the same command to resume"


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived (a BaseException, as KeyboardInterrupt is: no `except Exception` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` in the main thread while the block runs (the first one: a second
    signal then acts as the system's default, so a job stuck in its clean-up can still be stopped)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    try:
        previous = {s: signal.getsignal(s) for s in signals}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return

    def interrupt(signum, frame):
        for s in signals:
            signal.signal(s, signal.SIG_DFL)
        raise Interrupted(signum)

    for s in signals:
        signal.signal(s, interrupt)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def report_interrupted(exc: Interrupted | KeyboardInterrupt) -> int:
    """Print the one line (by the launch's main process only: every process of a launch gets the signal)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(RESUME_LINE, file=sys.stderr)
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


# What a command line stops on with one line rather than a traceback: bad input, or an interrupt.
STOPS = (UserError, Interrupted, KeyboardInterrupt)


def report_stop(exc: BaseException) -> int:
    """The one line of a command stopped by one of `STOPS`, and the exit status it ends with."""
    return report_user_error(exc) if isinstance(exc, UserError) else report_interrupted(exc)


def exit_process(code: int) -> NoReturn:
    """End a command-line process with `code`. After an interrupt the job has already unwound (temporaries removed,
    finished records kept), but native threads (torch's, a tokenizer's) may still be running, and the interpreter's
    finalisation can then abort ("terminate called without an active exception"): such a process ends at once.
    So does every process of a launch (accelerate/torchrun set WORLD_SIZE > 1) once its work is written and it has
    left the process group: a launched process was seen aborting that way, rarely, after its training stage had
    finished and written everything, which turned a finished job into a failed launch."""
    if code >= 128 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()  # what the interpreter's exit would have flushed
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
