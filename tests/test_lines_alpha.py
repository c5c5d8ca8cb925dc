"""α for weighted soups and the norm-matched uniform control, against independent fp64 computations.

α(w) = ‖Σ_i w̄_i τ_i‖₁ / ‖τ_merged(w)‖₁ with w̄ = w / Σw: the paper's rule (1/N)·‖Σ_i τ_i‖₁ / ‖τ_merged‖₁ at equal
weights, 1 for a linear soup, 1/Σw for task arithmetic, and independent of policies whose weight is zero.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import tiny
from lines import LinesError, MergeInputs
from lines.engine import TensorMerger
from lines.recipe import MergeSpec
from lines.update_norms import merge_profile
from reference_merge import depth_scale, merged_update

METHODS = [("linear", {}), ("task_arithmetic", {}), ("ties", {"density": 0.4}), ("dare_linear", {"density": 0.6}),
           ("consensus", {"k": 2, "tall_lambda": 0.6})]
WEIGHTS = [[0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3], [0.7, 0.3, 0.0], [1.0, 0.0, 0.0], [0.6, 0.9, 0.5]]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("alpha")
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, root / "base")
    for i, scale in enumerate([0.05, 0.08, 0.03, 0.06]):
        tiny.save(tiny.perturbed_copy(base, seed=20 + i, scale=scale), root / f"p{i}")
    state = lambda name: {k: v.double().numpy() for k, v in load_file(root / name / "model.safetensors").items()}  # noqa: E731
    return root, state("base"), [state(f"p{i}") for i in range(4)]


def reference_tvs(base, policies):
    return {n: [p[n] - base[n] for p in policies] for n in base}


def reference_alpha(tvs, weights, method, params):
    mean = np.asarray(weights) / np.sum(weights)
    numerator = sum(np.abs(sum(w * tv for w, tv in zip(mean, tvs[n]))).sum() for n in tvs)
    denominator = sum(np.abs(merged_update(n, tvs[n], weights, method, params, 0)).sum() for n in tvs)
    return numerator / denominator


def resolved_alpha(root, policies, weights, method, params) -> float:
    spec = MergeSpec(method=method, weights=weights, parameters=params, lines={"alpha": "auto", "beta": 0.5},
                     compute_dtype="float64")
    with MergeInputs(root / "base", [root / f"p{i}" for i in policies]) as inputs:
        return TensorMerger(spec, inputs).resolve_lines(progress=False).schedule.alpha


@pytest.mark.parametrize("method,params", METHODS, ids=[m for m, _ in METHODS])
@pytest.mark.parametrize("weights", WEIGHTS, ids=["uneven", "equal", "one-zero", "one-hot", "unnormalised"])
def test_alpha_equals_an_independent_computation(checkpoints, method, params, weights):
    root, base, policies = checkpoints
    if method == "consensus" and weights == [1.0, 0.0, 0.0]:  # no entry has two agreeing masks: τ_merged = 0
        with pytest.raises(LinesError, match="merged task vector is zero"):
            resolved_alpha(root, [0, 1, 2], weights, method, params)
        return
    expected = reference_alpha(reference_tvs(base, policies[:3]), weights, method, params)
    assert resolved_alpha(root, [0, 1, 2], weights, method, params) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("method,params", METHODS, ids=[m for m, _ in METHODS])
def test_at_equal_weights_alpha_is_the_papers_rule(checkpoints, method, params):
    root, base, policies = checkpoints
    tvs = reference_tvs(base, policies[:3])
    weights = [1.0, 1.0, 1.0]
    papers = (sum(np.abs(sum(tvs[n])).sum() for n in tvs) / 3
              / sum(np.abs(merged_update(n, tvs[n], weights, method, params, 0)).sum() for n in tvs))
    assert resolved_alpha(root, [0, 1, 2], weights, method, params) == pytest.approx(papers, rel=1e-9)


def test_the_closed_form_is_used_in_the_default_fp32_compute(checkpoints, monkeypatch):
    """(0.3, 0.7) rounded to fp32 is not exactly proportional to its fp64 mean: the rule must not fall back to a pass."""
    import lines.engine as engine

    root, _, _ = checkpoints
    monkeypatch.setattr(engine, "merge_profile", lambda *a, **k: pytest.fail("a pass over the inputs ran"))
    for weights in ([0.3, 0.7, 0.0], [0.1, 0.9, 0.0], [0.6, 0.4, 0.0]):
        for method, expected in (("linear", 1.0), ("task_arithmetic", 1.0)):
            spec = MergeSpec(method=method, weights=weights, lines={"alpha": "auto", "beta": 0.5})
            with MergeInputs(root / "base", [root / f"p{i}" for i in range(3)]) as inputs:
                assert TensorMerger(spec, inputs).resolve_lines(progress=False).schedule.alpha == \
                    pytest.approx(expected, rel=1e-12)


def test_linear_soups_get_one_and_task_arithmetic_one_over_the_weight_sum(checkpoints):
    root, _, _ = checkpoints
    for weights in WEIGHTS:
        assert resolved_alpha(root, [0, 1, 2], weights, "linear", {}) == 1.0
        assert resolved_alpha(root, [0, 1, 2], weights, "task_arithmetic", {}) == pytest.approx(1 / sum(weights),
                                                                                                  rel=1e-15)
    # The closed form agrees with the norms of a pass over the weights.
    spec = MergeSpec(method="task_arithmetic", weights=[0.6, 0.9, 0.5], lines={"alpha": "auto", "beta": 0.5})
    with MergeInputs(root / "base", [root / f"p{i}" for i in range(3)]) as inputs:
        assert merge_profile(TensorMerger(spec, inputs)).alpha() == pytest.approx(1 / 2.0, rel=1e-9)


@pytest.mark.parametrize("method,params", METHODS, ids=[m for m, _ in METHODS])
def test_a_policy_of_weight_zero_does_not_change_alpha(checkpoints, method, params):
    root, _, _ = checkpoints
    if method == "consensus":  # k = 2 of 3 masks: the third policy's mask takes part even at weight zero
        pytest.skip("TALL masks compare each task with the rest: not a property of the rule")
    with_p2 = resolved_alpha(root, [0, 1, 2], [0.7, 0.3, 0.0], method, params)
    with_p3 = resolved_alpha(root, [0, 1, 3], [0.7, 0.3, 0.0], method, params)
    assert with_p2 == pytest.approx(with_p3, rel=1e-12)


@pytest.mark.parametrize("profile", ["increasing", "centered"])
@pytest.mark.parametrize("method,params,weights", [("linear", {}, [0.2, 0.5, 0.3]),
                                                   ("ties", {"density": 0.4}, [0.5, 0.2, 0.3]),
                                                   ("task_arithmetic", {}, [0.6, 0.9, 0.5])])
@pytest.mark.parametrize("head_depth", ["alpha", "last"])
def test_the_norm_matched_control_has_the_lines_updates_l1_norm(checkpoints, method, params, weights, profile,
                                                                head_depth):
    root, base, policies = checkpoints
    lines = {"alpha": "auto", "beta": 0.8, "profile": profile, "head_depth": head_depth}
    spec = MergeSpec(method=method, weights=weights, parameters=params, lines=lines, compute_dtype="float64")
    with MergeInputs(root / "base", [root / f"p{i}" for i in range(3)]) as inputs:
        merger = TensorMerger(spec, inputs)
        profile_ = merge_profile(merger)
        schedule = merger.resolve_lines(progress=False, profile=profile_).schedule
        matched = profile_.matched_lambda(schedule)
    tvs = reference_tvs(base, policies[:3])
    merged = {n: merged_update(n, tvs[n], weights, method, params, 0) for n in tvs}
    alpha = reference_alpha(tvs, weights, method, params)
    lines_norm = sum(np.abs(depth_scale(n, alpha, 0.8, 3, head_depth, False, profile) * merged[n]).sum() for n in tvs)
    uniform_norm = sum(np.abs(matched * merged[n]).sum() for n in tvs)
    assert uniform_norm == pytest.approx(lines_norm, rel=1e-9)
    if profile == "increasing":  # the increasing profile adds magnitude: the match is not α itself
        assert matched > alpha * 1.05


def test_profiles_scale_blocks_as_stated():
    from lines.schedule import LinesSchedule

    increasing = LinesSchedule(1.0, 0.6, 4)
    centered = LinesSchedule(1.0, 0.6, 4, profile="centered")
    assert increasing.layer_scales() == pytest.approx([1.0, 1.2, 1.4, 1.6])
    assert centered.layer_scales() == pytest.approx([0.7, 0.9, 1.1, 1.3])
    assert np.mean(centered.layer_scales()) == pytest.approx(1.0)
    assert torch.tensor(centered.layer_scales()).diff().gt(0).all()


def test_alpha_of_a_method_that_reads_theta0(checkpoints):
    """mergekit_linear averages the policies' weights themselves (θ0 is read to form them): its τ_merged is the
    weighted mean of the task vectors, so α is 1 — computed by a pass over the inputs, θ0 included."""
    root, _, _ = checkpoints
    spec = MergeSpec(method="mergekit_linear", weights=[0.2, 0.5, 0.3], lines={"alpha": "auto", "beta": 0.5},
                     compute_dtype="float64")
    with MergeInputs(root / "base", [root / f"p{i}" for i in range(3)]) as inputs:
        merger = TensorMerger(spec, inputs)
        assert merger.method.linear_coefficients(torch.tensor([0.2, 0.5, 0.3]), {"normalize": True}) is None
        assert merge_profile(merger).alpha() == pytest.approx(1.0, rel=1e-12)


def test_fp32_merges_sum_their_norms_in_fp64(checkpoints):
    """In the default fp32 compute, the per-group L1 norms are accumulated in fp64: equal to an fp64 sum of the same
    fp32 updates far below fp32's own rounding."""
    root, _, _ = checkpoints
    spec = MergeSpec(method="ties", weights=[0.2, 0.5, 0.3], parameters={"density": 0.4},
                     lines={"alpha": "auto", "beta": 0.5})
    with MergeInputs(root / "base", [root / f"p{i}" for i in range(3)]) as inputs:
        merger = TensorMerger(spec, inputs)
        profile = merge_profile(merger)
        merged, mean = 0.0, 0.0
        weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float32)
        for name, rows in merger.blocks():
            if not inputs.base.info(name).dtype.is_floating_point:
                continue
            base, tvs = inputs.task_vectors(name, inputs.read_block(name, rows), torch.float32)
            merged += merger.merged_update(name, tvs, base).double().abs().sum().item()
            weighted = tvs * (weights / weights.sum()).reshape(-1, *([1] * (tvs.dim() - 1)))
            mean += weighted.sum(0).double().abs().sum().item()
    assert sum(profile.merged_l1.values()) == pytest.approx(merged, rel=1e-13)
    assert sum(profile.mean_l1.values()) == pytest.approx(mean, rel=1e-13)


def test_a_non_finite_weight_is_named_by_the_alpha_pass(checkpoints, tmp_path):
    root, _, _ = checkpoints
    state = load_file(root / "p1" / "model.safetensors")
    name = sorted(state)[3]
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in (root / "p1").iterdir():
        if item.name != "model.safetensors":
            (broken / item.name).write_bytes(item.read_bytes())
    from safetensors.torch import save_file

    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    spec = MergeSpec(method="ties", weights=[0.5, 0.5], parameters={"density": 0.4},
                     lines={"alpha": "auto", "beta": 0.5})
    with MergeInputs(root / "base", [root / "p0", broken]) as inputs:
        with pytest.raises(LinesError, match=rf"tensor '{re.escape(name)}' has non-finite values"):
            merge_profile(TensorMerger(spec, inputs))


def test_alpha_with_weights_that_differ_between_tensors(checkpoints):
    """A mergekit config may give a policy one weight on the MLPs and another elsewhere. A normalised linear merge's
    τ_merged is then, tensor by tensor, the mean of the task vectors under that tensor's weights, so α = 1 only if
    each tensor's mean is taken with its own weights (one set of weights for every tensor gives another number)."""
    from lines.mergekit_config import recipe_from_mergekit

    root, _, _ = checkpoints
    recipe = recipe_from_mergekit({
        "merge_method": "linear", "dtype": "float32",
        "models": [{"model": str(root / "p0"), "parameters": {"weight": 0.3}},
                   {"model": str(root / "p1"), "parameters": {"weight": [{"filter": "mlp", "value": 2.0},
                                                                          {"value": 0.1}]}}],
        "base_model": str(root / "base"), "parameters": {"weight": 0.0}, "lines": {"alpha": "auto", "beta": 0.5}})
    spec = recipe.spec().model_copy(update={"compute_dtype": "float64"})
    with MergeInputs(root / "base", [m.model for m in recipe.models]) as inputs:
        merger = TensorMerger(spec, inputs)
        assert len({tuple(merger.settings(n).weights.tolist()) for n, _ in merger.blocks()}) > 1
        assert merge_profile(merger).alpha() == pytest.approx(1.0, rel=1e-12)
