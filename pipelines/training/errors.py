"""The training stage's bad-input error: one line (what, where, how to fix), printed as `error: ...`."""
from __future__ import annotations

from ..errors import PipelineError


class TrainingError(PipelineError):
    """A bad training config, an incompatible checkpoint, or a request this machine cannot honour."""
