"""Every merge method, with and without LiNeS, against the fp64 reference on tiny checkpoints of four families."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import lines
import tiny
from reference_merge import reference_merge

FAMILIES = ["llama", "gpt2", "gpt_neox", "gemma"]  # untied, tied (no lm_head stored), untied NeoX, tied Llama-style
METHODS = [
    ("linear", {}),
    ("linear", {"normalize": False}),
    ("task_arithmetic", {}),
    ("ties", {"density": 0.4}),
    ("dare_linear", {"density": 0.6}),
    ("dare_ties", {"density": 0.6}),
    ("consensus", {"k": 2, "tall_lambda": 0.6}),
    ("slerp", {}),
]
LINES = [None, {"alpha": 0.3, "beta": 0.6}, {"alpha": 0.3, "beta": 0.6, "head_depth": "last"},
         {"alpha": "auto", "beta": 0.5}, {"alpha": "auto", "beta": 0.5, "head_depth": "last"},
         {"alpha": "auto", "beta": 0.8, "profile": "centered", "head_depth": "last"}]


def load_state(path):
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(file))
    return state


@pytest.fixture(scope="module", params=FAMILIES)
def family_checkpoints(request, tmp_path_factory):
    family = request.param
    root = tmp_path_factory.mktemp(family)
    base = tiny.tiny_model(family, seed=0)
    tiny.save(base, root / "base")
    policies = []
    for i, scale in enumerate([0.05, 0.08, 0.03]):
        tiny.save(tiny.perturbed_copy(base, seed=10 + i, scale=scale), root / f"p{i}")
        policies.append(root / f"p{i}")
    config = json.loads((root / "base" / "config.json").read_text())
    return family, root, config


@pytest.mark.parametrize("method,params", METHODS, ids=lambda x: x if isinstance(x, str) else None)
@pytest.mark.parametrize("lines_cfg", LINES, ids=["plain", "lines", "lines-head-last", "auto", "auto-head-last",
                                                  "auto-centered-head-last"])
def test_matches_fp64_reference(family_checkpoints, method, params, lines_cfg, tmp_path):
    family, root, config = family_checkpoints
    n = 2 if method == "slerp" else 3
    weights = [0.3, 0.7] if n == 2 else [0.2, 0.5, 0.3]
    recipe = lines.parse_recipe({
        "base_model": str(root / "base"),
        "models": [{"model": str(root / f"p{i}"), "weight": w} for i, w in enumerate(weights)],
        "method": method, "parameters": params, "lines": lines_cfg, "seed": 7})
    out = lines.merge(recipe, tmp_path / "out", progress=False)

    merged = load_state(out)
    base = load_state(root / "base")
    expected = reference_merge(base, [load_state(root / f"p{i}") for i in range(n)], weights, method, params,
                               lines_cfg, num_layers=3, tied=config.get("tie_word_embeddings", False), seed=7)
    assert set(merged) == set(base)
    worst = max(float(np.abs(merged[k].double().numpy() - expected[k]).max()) for k in expected)
    assert worst <= 1e-6, f"max abs error {worst:.3g}"
    # The merge must actually move the weights (a merge that returned θ0 would pass a loose check).
    moved = max(float((merged[k].double() - base[k].double()).abs().max()) for k in expected)
    assert moved > 1e-3


def test_fp64_compute_is_tighter(family_checkpoints, tmp_path):
    family, root, config = family_checkpoints
    recipe = lines.parse_recipe({
        "base_model": str(root / "base"), "models": [{"model": str(root / "p0"), "weight": 0.5},
                                                     {"model": str(root / "p1"), "weight": 0.5}],
        "lines": {"alpha": "auto", "beta": 0.7}, "dtype": "float64", "compute_dtype": "float64"})
    merged = load_state(lines.merge(recipe, tmp_path / "out", progress=False))
    expected = reference_merge(load_state(root / "base"), [load_state(root / "p0"), load_state(root / "p1")],
                               [0.5, 0.5], lines={"alpha": "auto", "beta": 0.7}, num_layers=3,
                               tied=config.get("tie_word_embeddings", False))
    assert all(merged[k].dtype == torch.float64 for k in merged)
    assert max(float(np.abs(merged[k].numpy() - expected[k]).max()) for k in expected) <= 1e-12
