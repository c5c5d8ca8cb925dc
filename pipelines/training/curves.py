"""Training curves for manifests: the numeric metrics trl logged at each logging step."""
from __future__ import annotations

import math

# Bookkeeping entries of log_history that are not learning curves.
_SKIP = {"step", "epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second",
         "train_loss", "num_tokens"}


def training_curve(log_history: list[dict], step_offset: int = 0, **extra) -> list[dict]:
    """One row per logged step: {'step', **extra, 'loss', ...trl metrics (rewards/margins, reward, kl, ...)}.

    The end-of-training summary entry (runtime, mean loss) has no per-step metric and is left out.
    """
    rows = []
    for entry in log_history:
        metrics = {key: value for key, value in entry.items()
                   if key not in _SKIP and isinstance(value, (int, float)) and not isinstance(value, bool)}
        if "step" not in entry or not metrics:
            continue
        clean = {key: (float(value) if math.isfinite(float(value)) else None) for key, value in metrics.items()}
        rows.append({"step": int(entry["step"]) + step_offset, **extra, **clean})
    return rows
