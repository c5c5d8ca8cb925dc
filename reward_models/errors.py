"""The one exception type reward scoring raises for bad input.

Its message is a single line (what, where, how to fix) so a CLI can print `error: <message>` and exit
non-zero instead of showing a traceback from deep inside transformers or numpy.
"""


class RewardError(Exception):
    """Bad reward configuration or input; `str(err)` is one line meant for the user."""

    def __init__(self, message: str):
        # Collapse newlines: library messages we wrap sometimes span several lines.
        super().__init__(" ".join(str(message).split()))
