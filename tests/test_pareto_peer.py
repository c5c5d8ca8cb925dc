"""The exact hypervolume against a peer implementation (moocore, C) on random fronts of 2 to 4 rewards."""
import moocore
import numpy as np
import pytest

from pipelines.pareto import hypervolume


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("kind", ["continuous", "grid"])
def test_hypervolume_matches_moocore(k, kind):
    """Fronts as sweeps make them (tens of points, dominated ones among them) and degenerate ones: points on a grid
    (equal coordinates, duplicates), points not beyond the reference in some reward, single points."""
    rng = np.random.default_rng(k * 10 + (kind == "grid"))
    for trial in range(40):
        n = int(rng.integers(1, 30))
        points = rng.normal(size=(n, k)) if kind == "continuous" else rng.integers(-2, 5, size=(n, k)).astype(float)
        reference = np.quantile(points, 0.2, axis=0) if trial % 2 else points.min(axis=0) - 0.5
        expected = moocore.hypervolume(points, ref=reference, maximise=True)
        assert hypervolume(points, reference) == pytest.approx(expected, rel=1e-12, abs=1e-12), (trial, points,
                                                                                               reference)
