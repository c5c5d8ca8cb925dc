"""An independent fp64 reference for every merge method and LiNeS, in numpy, written from the formulas.

It shares nothing with `lines` except the seeded DARE keep masks, which are random *inputs* to the method.
"""
from __future__ import annotations

import re

import numpy as np
import torch

from lines.merge_methods import dare_keep_mask, dare_seed

_BLOCK = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")
_FINAL_OR_HEAD = re.compile(r"(^|\.)(norm|ln_f|final_layer_norm)\.(weight|bias)$|^(lm_head|score|embed_out)\.")


def depth_scale(name, alpha, beta, num_layers, head_depth, tied, profile="increasing"):
    match = _BLOCK.search(name)
    shift = 0.5 if profile == "centered" else 0.0
    last = alpha + beta * (1 - shift)
    if match:
        layer = int(match.group(1))
        return alpha + beta * (layer / (num_layers - 1) - shift)
    is_tied_head = tied and name in ("lm_head.weight", "embed_out.weight")
    if head_depth == "last" and _FINAL_OR_HEAD.search(name) and not is_tied_head:
        return last
    return alpha


def _trim(tv, density):
    flat = tv.reshape(-1)
    k = int(round(density * flat.size))
    out = np.zeros_like(flat)
    if k > 0:
        keep = np.argsort(-np.abs(flat), kind="stable")[:k]
        out[keep] = flat[keep]
    return out.reshape(tv.shape)


def _disjoint(tvs, w, normalize):
    sign = np.sign(sum(wi * t for wi, t in zip(w, tvs)))
    num = np.zeros_like(tvs[0])
    den = np.zeros_like(tvs[0])
    for wi, t in zip(w, tvs):
        agree = (np.sign(t) == sign) & (t != 0)
        num += wi * t * agree
        den += wi * agree
    if not normalize:
        return num
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def merged_update(name, tvs, weights, method, params, seed):
    w = np.asarray(weights, dtype=np.float64)
    if method == "linear":
        w = w / w.sum() if params.get("normalize", True) else w
        return sum(wi * t for wi, t in zip(w, tvs))
    if method == "task_arithmetic":
        return sum(wi * t for wi, t in zip(w, tvs))
    if method == "ties":
        return _disjoint([_trim(t, params["density"]) for t in tvs], w, params.get("normalize", True))
    if method in ("dare_linear", "dare_ties"):
        d = params["density"]
        dropped = [t * dare_keep_mask(t.shape, d, dare_seed(seed, name, i)).numpy() / d for i, t in enumerate(tvs)]
        if method == "dare_ties":
            return _disjoint(dropped, w, params.get("normalize", True))
        w = w / w.sum() if params.get("normalize", True) else w
        return sum(wi * t for wi, t in zip(w, dropped))
    if method == "consensus":
        w = w / w.sum() if params.get("normalize", False) else w
        weighted = [wi * t for wi, t in zip(w, tvs)]
        mtl = sum(weighted)
        lam = params.get("tall_lambda", 1.0)
        votes = sum((np.abs(x) > lam * np.abs(mtl - x)).astype(int) for x in weighted)
        return np.where(votes >= params.get("k", 2), mtl, 0.0)
    if method == "slerp":
        t = params.get("t")
        t = w[1] / w.sum() if t is None else t
        a, b = tvs
        cos = float(np.dot(a.ravel(), b.ravel()) / (np.linalg.norm(a) * np.linalg.norm(b)))
        omega = np.arccos(np.clip(cos, -1, 1))
        if np.sin(omega) < 1e-6:
            return (1 - t) * a + t * b
        return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    raise ValueError(method)


def reference_merge(base: dict, policies: list[dict], weights, method="linear", params=None, lines=None,
                    num_layers=None, tied=False, seed=0) -> dict[str, np.ndarray]:
    """base/policies: name -> torch tensor. lines: None or dict(alpha=float|'auto', beta=, gamma=, head_depth=)."""
    params = params or {}
    f64 = {n: t.to(torch.float64).numpy() for n, t in base.items() if t.is_floating_point()}
    tvs = {n: [p[n].to(torch.float64).numpy() - f64[n] for p in policies] for n in f64}
    merged = {n: merged_update(n, tvs[n], weights, method, params, seed) for n in f64}
    if lines is None:
        return {n: f64[n] + merged[n] for n in f64}
    if lines.get("gamma") is not None:
        alpha, beta = lines["gamma"], 1 - lines["gamma"]
    else:
        alpha, beta = lines["alpha"], lines["beta"]
        if alpha == "auto":  # ‖Σ w̄_i τ_i‖₁ / ‖τ_merged‖₁, w̄ = w / Σw, over all floating parameters
            mean = np.asarray(weights, dtype=np.float64) / np.sum(weights)
            total = sum(np.abs(sum(w * tv for w, tv in zip(mean, tvs[n]))).sum() for n in f64)
            alpha = total / sum(np.abs(merged[n]).sum() for n in f64)
    head_depth = lines.get("head_depth", "alpha")
    profile = lines.get("profile", "increasing")
    return {n: f64[n] + depth_scale(n, alpha, beta, num_layers, head_depth, tied, profile) * merged[n] for n in f64}


# -- mergekit's semantics (the mergekit_* methods), from mergekit's formulas ----------------------------------

def gradient_value(value, name, num_layers):
    """A mergekit value at a tensor: a number, or a gradient interpolated over the depth t (ℓ/(L−1) in block ℓ, 0
    outside the blocks) — np.interp, not the engine's arithmetic."""
    if not isinstance(value, list):
        return value
    match = _BLOCK.search(name)
    t = (int(match.group(1)) / (num_layers - 1) if num_layers > 1 else 1.0) if match else 0.0
    return float(np.interp(t, np.linspace(0.0, 1.0, len(value)), value))


def setting_value(setting, name, num_layers):
    """A mergekit setting ({filter, value} list or a plain value) at a tensor, or None where no filter matches."""
    if isinstance(setting, list) and setting and isinstance(setting[0], dict):
        for cond in setting:
            if cond.get("filter") is None or cond["filter"] in name:
                return gradient_value(cond["value"], name, num_layers)
        return None
    return gradient_value(setting, name, num_layers)


def _mk_sparsify(tv, density, method, rescale, mask=None):
    if density >= 1:
        return tv
    flat = tv.reshape(-1)
    if method == "magnitude":
        k = max(1, int(density * flat.size))
        keep = np.zeros(flat.size, dtype=bool)
        keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
        masked = np.where(keep, flat, 0.0).reshape(tv.shape)
    else:
        masked = tv * mask
    if rescale:
        before, after = np.abs(tv).sum(), np.abs(masked).sum()
        if before >= 1e-7 and after >= 1e-7:
            masked = masked * (before / after)
    return masked


def mergekit_update(name, base, tvs, method, weights, params, seed):
    """τ_merged of the mergekit_* methods at one tensor, weights and params already resolved for it."""
    w = np.asarray(weights, dtype=np.float64)
    if method == "mergekit_linear":
        thetas = [base + tv for tv in tvs]
        total = sum(wi * t for wi, t in zip(w, thetas))
        return (total / w.sum() if params.get("normalize", True) else total) - base
    if method == "mergekit_slerp":
        v0, v1, t = base.ravel(), (base + tvs[0]).ravel(), params["t"]
        dot = np.dot(v0 / np.linalg.norm(v0), v1 / np.linalg.norm(v1))
        if abs(dot) > 0.9995:
            out = (1 - t) * v0 + t * v1
        else:
            omega = np.arccos(np.clip(dot, -1, 1))
            out = (np.sin((1 - t) * omega) * v0 + np.sin(t * omega) * v1) / np.sin(omega)
        return out.reshape(base.shape) - base
    sparsification = {"mergekit_ties": "magnitude", "mergekit_dare_ties": "random",
                      "mergekit_dare_linear": "random"}.get(method)
    consensus = method in ("mergekit_ties", "mergekit_dare_ties")
    densities = params.get("density", [1.0] * len(tvs))
    deltas = []
    for i, tv in enumerate(tvs):
        mask = None
        if sparsification == "random" and densities[i] < 1:
            mask = dare_keep_mask(tv.shape, densities[i], dare_seed(seed, name, i)).numpy()
        deltas.append(_mk_sparsify(tv, densities[i], sparsification, params.get("rescale", False), mask)
                      if sparsification else tv)
    weighted = [wi * d for wi, d in zip(w, deltas)]
    if consensus:
        majority = np.where(sum(weighted) >= 0, 1.0, -1.0)
        agree = [np.sign(x) == majority for x in weighted]
        mixed = sum(x * a for x, a in zip(weighted, agree))
        divisor = sum(wi * a for wi, a in zip(w, agree))
        divisor = np.where(divisor == 0, 1.0, divisor)
    else:
        mixed = sum(weighted)
        divisor = w.sum() if abs(w.sum()) >= 1e-8 else 1.0
    if params.get("normalize", False):
        mixed = mixed / divisor
    return mixed * params.get("lambda_", 1.0)
