"""A small finished run written straight into the sweep's cache layout (plan, points, samples), for the report's tests:
a soup, a LiNeS front, its norm-matched control and the tuned uniform control over three weights, θ0 and two policies,
two rewards and one closeness metric. Some responses are hostile markup, to check that the report shows them as text.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.sweep.cache import SweepCache

REWARDS, METRICS = ["positive", "long"], ["kl"]
PROMPTS = [f"test-{i:04d}" for i in range(6)]
WEIGHTS = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
HOSTILE = "</script><img src=x onerror=\"document.title='pwned'\"> & <b>bold</b>"


def _objective(rng, mean: float, higher: bool, metric: bool) -> dict:
    values = (mean + rng.normal(0, 0.1, len(PROMPTS))).round(4).tolist()
    return {"mean": float(np.mean(values)), "stderr": float(np.std(values) / len(values) ** 0.5), "n": len(values),
            "n_prompts": len(values), "per_prompt": values, "higher_is_better": higher, "is_metric": metric,
            "normalization": {"method": "raw", "mean": None, "std": None, "n_reference": 0}, "unit": "prompt"}


def write_tiny_run(root: Path, seed: int = 0, name: str = "tiny") -> Path:
    run = root / name
    sweep = run / "sweep"
    for sub in ("points", "samples"):
        (sweep / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    keys = []

    def point(variant, front, candidate, weights, lines=None, alpha=None):
        key = f"{len(keys):024x}"
        gen_key = f"g{len(keys):023x}"
        shift = weights[0] - weights[1]
        objectives = {"positive": _objective(rng, 0.5 * shift + (0.1 if lines else 0), True, False),
                      "long": _objective(rng, -0.5 * shift, True, False),
                      "kl": _objective(rng, 1.0 + abs(shift), False, True)}
        applied = {"alpha": alpha, "beta": (lines or {}).get("beta", 0.0), "profile": "increasing",
                   "head_depth": "alpha", "block_scales": [alpha, alpha * 1.5]} if alpha is not None else None
        record = {"key": key, "gen_key": gen_key, "variant": variant, "candidate": candidate, "split": "evaluation",
                  "weights": weights, "merge": {"method": "linear", "weights": weights, "parameters": {},
                                                "lines": lines},
                  "front": front, "lines_applied": applied, "prompt_ids": PROMPTS, "objectives": objectives,
                  "response_tokens_mean": 8.0}
        SweepCache(sweep).save_point(key, record)
        rows = [{"prompt_id": pid, "prompt": f"Prompt {i} about <soup>", "sample_index": 0,
                 "response": HOSTILE if i == 1 else f"{front} at {weights[0]:g}: response {i}",
                 "prompt_tokens": 4, "response_tokens": 8} for i, pid in enumerate(PROMPTS)]
        SweepCache(sweep).save_samples(gen_key, rows)  # the cache's own format (end line with key and row count)
        keys.append(key)

    point("base", "base", "", [0.0, 0.0])
    point("policy", "policy[positive]", "positive", [1.0, 0.0])
    point("policy", "policy[long]", "long", [0.0, 1.0])
    for w in WEIGHTS:
        point("soup", "soup", "", w)
        point("lines", "lines[beta=0.5]", "beta=0.5", w, {"alpha": 1.0, "beta": 0.5}, 1.0)
        point("matched", "matched[lines]", "lines", w, {"alpha": 1.1, "beta": 0.0}, 1.1)
        point("uniform", "uniform[lambda=1.25]", "lambda=1.25", w, {"alpha": 1.25, "beta": 0.0}, 1.25)
    plan = {"selection": {}, "rewards": REWARDS, "metrics": METRICS, "evaluation_keys": keys, "validation_keys": []}
    (sweep / "plan.json").write_text(json.dumps(plan))
    (run / "config.yaml").write_text("run_name: tiny\nbootstrap: {samples: 50, seed: 0, level: 0.95}\n"
                                     "report: {samples_shown: 2}\n")
    return run
