"""Training curves for manifests: the numeric metrics trl logged at each logging step."""
from __future__ import annotations

import math

# Bookkeeping entries of log_history that are not learning curves.
_SKIP = {"epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second",
         "train_loss", "num_tokens"}


def training_curve(log_history: list[dict], step_offset: int = 0, **extra) -> list[dict]:
    """One row per logged step: {'step', 'loss', ...trl metrics (rewards/margins, reward, kl, ...)}."""
    rows = []
    for entry in log_history:
        if "step" not in entry or not any(k for k in entry if k not in _SKIP and k != "step"):
            continue
        row = {"step": int(entry["step"]) + step_offset, **extra}
        for key, value in entry.items():
            if key in _SKIP or key == "step" or not isinstance(value, (int, float)):
                continue
            row[key] = float(value) if math.isfinite(float(value)) else None
        if len(row) > 1 + len(extra):
            rows.append(row)
    return rows
