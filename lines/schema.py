"""The one strict base class of every config schema in the project: an unknown field is an error, never ignored."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: a misspelt or unknown field fails validation instead of being silently dropped."""

    model_config = ConfigDict(extra="forbid")
