"""The exception the pipeline stages raise for bad input (a `lines.errors.UserError`: one line saying what,
where and how to fix; entry points print `error: <message>` and exit 2)."""
from lines.errors import UserError


class PipelineError(UserError):
    """A bad config, prompt file or run directory, or a request this machine cannot honour."""
