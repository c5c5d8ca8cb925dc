"""Per-reward normalisation: raw, or z-score against a reference set of responses.

The mean and std used travel with every score (`Normalizer.record()`), so a report can always say
what a normalised number means.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from .errors import RewardError


@dataclass
class Normalizer:
    method: Literal["raw", "zscore"] = "raw"
    mean: float | None = None
    std: float | None = None
    n_reference: int = 0

    @property
    def fitted(self) -> bool:
        return self.method == "raw" or self.mean is not None

    def fit(self, reference_scores: Sequence[float]) -> "Normalizer":
        """Record mean and std (population, ddof=0) of the reference scores.

        A reference with zero spread (e.g. a constant metric) gets std 1 so that z-scores stay finite;
        the std actually used is what is recorded.
        """
        values = np.asarray(reference_scores, dtype=np.float64)
        if values.size == 0:
            raise RewardError("z-score normalisation needs a non-empty reference set of responses")
        std = float(values.std())
        self.mean, self.std, self.n_reference = float(values.mean()), (std if std > 0 else 1.0), int(values.size)
        return self

    def apply(self, values: np.ndarray, reward_name: str = "?") -> np.ndarray:
        if self.method == "raw":
            return values
        if self.mean is None:
            raise RewardError(f"reward '{reward_name}' uses z-score normalisation but has no reference statistics; "
                              "give normalize.reference (a file of prompt/response rows) or call fit_normalizers")
        return (values - self.mean) / self.std

    def restore(self, record: dict) -> "Normalizer":
        """The statistics of another normaliser's `record()` (fitted by another process), taken as they are."""
        self.method, self.mean, self.std = record["method"], record["mean"], record["std"]
        self.n_reference = int(record["n_reference"])
        return self

    def record(self) -> dict:
        return {"method": self.method, "mean": self.mean, "std": self.std, "n_reference": self.n_reference}
