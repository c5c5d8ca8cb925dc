"""The run's report: fronts, hypervolumes with intervals, the uniform control, diagnostics, forgetting study."""
from .build import build_report

__all__ = ["build_report"]
