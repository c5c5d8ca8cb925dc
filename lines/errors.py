"""The one exception type users see: its message is a single line saying what, where and how to fix."""


class LinesError(Exception):
    """Bad input or a failed precondition. The CLI prints `error: <message>` and exits non-zero."""
