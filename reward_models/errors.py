"""The exception reward scoring raises for bad input (a `lines.errors.UserError`, rendered as one line)."""
from lines.errors import UserError


class RewardError(UserError):
    """Bad reward configuration or input; `str(err)` is one line meant for the user."""
