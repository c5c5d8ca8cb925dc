"""A readout that needs no reference point: each front's reward where its KL(π‖π0) equals the soup's.

For every point of the soup (weights w, KL k, rewards R), a front's rewards at KL k are interpolated linearly along
the front's own weights (its points in weight order: a path for two rewards); where the front's KL crosses k more
than once, the crossing nearest to w is taken, and where it never reaches k the point is unmatched. The gain of the
front there is Σ_r w_r · (R*_r − R_r) / scale_r in oriented units (every reward maximised, scaled by the anchors'
range so rewards of different units add up; no reference point enters). A front's readout is the mean gain over
the soup points both fronts of a comparison match (paired); the soup's own gain is zero.

    matched_kl_gains(data, scale, directions) -> {front: {weights tuple: gain}} | None   (None: not defined here)
    matched_kl_difference(gains, a, b) -> (mean over shared matched points of gain_a − gain_b, their count)
    kl_per_token(data) -> {front: (mean KL per response, mean KL per token)}
"""
from __future__ import annotations

import math

import numpy as np

from .data import RunData


def kl_metric(data: RunData) -> str | None:
    """The name of the run's KL(π‖π0) metric of the responses (type: kl), if it has one."""
    for spec in data.config.get("metrics") or []:
        if spec.get("type") == "kl" and spec.get("name") in data.metrics:
            return spec["name"]
    return None


def soup_front(data: RunData) -> str | None:
    """The plain linear soup the readout matches KL to: the first variant with method linear and no LiNeS."""
    fronts = data.fronts()
    for spec in (data.config.get("sweep") or {}).get("variants") or []:
        if spec.get("method", "linear") == "linear" and not spec.get("lines") and spec["name"] in fronts:
            return spec["name"]
    return None


def _crossing(ts: np.ndarray, kls: np.ndarray, values: np.ndarray, k: float, t0: float) -> np.ndarray | None:
    best, best_distance = None, math.inf
    for j in range(len(ts) - 1):
        lo, hi = kls[j], kls[j + 1]
        if (lo - k) * (hi - k) > 0:
            continue
        u = 0.0 if hi == lo else (k - lo) / (hi - lo)
        t = ts[j] + u * (ts[j + 1] - ts[j])
        if abs(t - t0) < best_distance:
            best, best_distance = values[j] + u * (values[j + 1] - values[j]), abs(t - t0)
    return best


def matched_kl_gains(data: RunData, scale: np.ndarray, directions: list[bool]) -> dict[str, dict] | None:
    """Per front, the gain at each soup point whose KL the front reaches (see the module's docstring). None when the
    run has no KL metric, no plain soup, or more than two rewards (the weights are then no path)."""
    kl, soup = kl_metric(data), soup_front(data)
    if kl is None or soup is None or len(data.rewards) != 2:
        return None
    signs = np.where(np.asarray(directions), 1.0, -1.0)

    def table(points):
        points = sorted(points, key=lambda p: p["weights"][0])
        ts = np.array([p["weights"][0] for p in points])
        kls = np.array([p["objectives"][kl]["mean"] for p in points])
        values = np.array([[p["objectives"][r]["mean"] for r in data.rewards] for p in points]) * signs / scale
        return points, ts, kls, values

    soup_points, _, soup_kls, soup_values = table(data.fronts()[soup])
    gains: dict[str, dict] = {}
    for front, points in data.fronts().items():
        _, ts, kls, values = table(points)
        gains[front] = {}
        for p, k, here in zip(soup_points, soup_kls, soup_values):
            at = _crossing(ts, kls, values, k, p["weights"][0])
            if at is not None:
                gains[front][tuple(p["weights"])] = float(np.dot(p["weights"], at - here))
    return gains


def matched_kl_difference(gains: dict[str, dict], a: str, b: str) -> tuple[float, int]:
    shared = sorted(set(gains[a]) & set(gains[b]))
    if not shared:
        return math.nan, 0
    return float(np.mean([gains[a][w] - gains[b][w] for w in shared])), len(shared)


def kl_per_token(data: RunData) -> dict[str, tuple[float, float]]:
    """{front or θ0: (mean over its points of KL per response, of KL per response token)} — length is one of the
    demo's rewards, so a long-response front has more KL per response at the same KL per token."""
    kl = kl_metric(data)
    if kl is None:
        return {}
    out = {}
    for front, points in data.fronts().items():
        per_response = [p["objectives"][kl]["mean"] for p in points]
        per_token = [p["objectives"][kl]["mean"] / p["response_tokens_mean"] for p in points
                     if p.get("response_tokens_mean")]
        out[front] = (float(np.mean(per_response)), float(np.mean(per_token)) if per_token else math.nan)
    return out
