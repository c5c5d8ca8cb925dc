"""The merge-method registry: a method declared in one place is usable everywhere, every built-in entry agrees
with its declared properties, and canonical forms identify equal merges."""
import json

import numpy as np
import pytest
import torch
from pydantic import Field
from safetensors.torch import load_file

import lines
import tiny
from lines import merge_methods as mm
from lines.method_registry import (MergeContext, MergeMethod, get_method, method_names, register_method,
                                   unregister_method)
from lines.recipe import MergeSpec, canonical_merge
from lines.schema import StrictModel
from reference_merge import depth_scale

# -- a new method, declared once inside the test ----------------------------------------------------------


class MaxAbsParams(StrictModel):
    scale: float = Field(default=1.0, gt=0.0)


def max_abs(tvs: torch.Tensor, weights: torch.Tensor, scale: float) -> torch.Tensor:
    """Per entry, the weighted task vector entry w_i τ_i of largest magnitude, times `scale`."""
    weighted = tvs * weights.reshape((-1,) + (1,) * (tvs.dim() - 1))
    index = weighted.abs().argmax(0, keepdim=True)
    return scale * weighted.gather(0, index).squeeze(0)


def reference_max_abs(tvs: list[np.ndarray], weights, scale) -> np.ndarray:
    weighted = np.stack([w * t for w, t in zip(weights, tvs)])
    index = np.abs(weighted).argmax(0)[None]
    return scale * np.take_along_axis(weighted, index, 0)[0]


@pytest.fixture()
def max_abs_method():
    register_method(MergeMethod("max_abs", MaxAbsParams, lambda tvs, w, p, ctx: max_abs(tvs, w, p["scale"]),
                                elementwise=True))
    try:
        yield
    finally:
        unregister_method("max_abs")
    assert "max_abs" not in method_names()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, root / "base")
    for i, scale in enumerate([0.05, 0.08, 0.03]):
        tiny.save(tiny.perturbed_copy(base, seed=10 + i, scale=scale), root / f"p{i}")
    return root


def load_state(path):
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(file))
    return state


def recipe(root, method, parameters, lines_cfg=None, **extra):
    return lines.parse_recipe({
        "base_model": str(root / "base"), "method": method, "parameters": parameters, "lines": lines_cfg,
        "models": [{"model": str(root / f"p{i}"), "weight": w} for i, w in enumerate([0.2, 0.5, 0.3])],
        **extra})


@pytest.mark.parametrize("lines_cfg", [None, {"alpha": "auto", "beta": 0.5}], ids=["plain", "auto"])
def test_a_registered_method_merges_end_to_end(max_abs_method, checkpoints, lines_cfg, tmp_path):
    root = checkpoints
    r = recipe(root, "max_abs", {"scale": 1.5}, lines_cfg, dtype="float64", compute_dtype="float64")
    merged = load_state(lines.merge(r, tmp_path / "out", progress=False))

    base = {n: t.double().numpy() for n, t in load_state(root / "base").items()}
    policies = [load_state(root / f"p{i}") for i in range(3)]
    tvs = {n: [p[n].double().numpy() - base[n] for p in policies] for n in base}
    update = {n: reference_max_abs(tvs[n], [0.2, 0.5, 0.3], 1.5) for n in base}
    if lines_cfg is None:
        expected = {n: base[n] + update[n] for n in base}
    else:
        mean = np.array([0.2, 0.5, 0.3]) / 1.0  # α(w) = ‖Σ w̄_i τ_i‖₁ / ‖τ_merged‖₁ (the weights sum to 1)
        alpha = (sum(np.abs(sum(w * tv for w, tv in zip(mean, tvs[n]))).sum() for n in base)
                 / sum(np.abs(update[n]).sum() for n in base))
        expected = {n: base[n] + depth_scale(n, alpha, 0.5, 3, "alpha", False) * update[n] for n in base}
    assert set(merged) == set(expected)
    worst = max(float(np.abs(merged[n].numpy() - expected[n]).max()) for n in expected)
    assert worst <= 1e-12, worst
    assert max(float(np.abs(update[n]).max()) for n in update) > 1e-3  # the merge moved the weights

    spec = r.spec()
    assert canonical_merge(spec) == {"method": "max_abs", "weights": [0.2, 0.5, 0.3], "parameters": {"scale": 1.5},
                                     "lines": spec.lines and {k: v for k, v in spec.lines.model_dump().items()
                                                                   if k not in ("reverse", "scope")},
                                     "compute_dtype": "float64"}
    # Defaults are filled in the canonical form; the seed does not enter it (the method does not use it).
    assert canonical_merge(recipe(root, "max_abs", {}, seed=3).spec())["parameters"] == {"scale": 1.0}
    assert canonical_merge(recipe(root, "max_abs", {}, seed=3).spec()) == canonical_merge(
        recipe(root, "max_abs", {"scale": 1.0}).spec())


@pytest.mark.parametrize("parameters,needle", [
    ({"scale": -1.0}, "parameters of method max_abs: field 'scale'"),
    ({"sacle": 2.0}, "field 'sacle' is not a setting here"),
])
def test_a_registered_method_rejects_bad_parameters_in_one_line(max_abs_method, checkpoints, parameters, needle):
    with pytest.raises(lines.LinesError) as info:
        recipe(checkpoints, "max_abs", parameters)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_methods_name_the_registered_ones(checkpoints, max_abs_method):
    with pytest.raises(lines.LinesError) as info:
        recipe(checkpoints, "foo", {})
    message = str(info.value)
    assert "field 'method': unknown merge method 'foo'; use one of linear, task_arithmetic" in message
    assert message.rstrip().endswith("max_abs") and "\n" not in message


def test_unregistered_method_is_unknown_again(checkpoints):
    register_method(MergeMethod("max_abs", MaxAbsParams, lambda tvs, w, p, ctx: max_abs(tvs, w, p["scale"])))
    unregister_method("max_abs")
    with pytest.raises(lines.LinesError, match="unknown merge method 'max_abs'"):
        recipe(checkpoints, "max_abs", {})


def test_registration_guards():
    with pytest.raises(ValueError, match="already registered"):
        register_method(MergeMethod("linear", MaxAbsParams, lambda tvs, w, p, ctx: tvs[0]))
    from pydantic import BaseModel

    class Loose(BaseModel):
        scale: float = 1.0

    with pytest.raises(ValueError, match="must forbid extra fields"):
        register_method(MergeMethod("loose", Loose, lambda tvs, w, p, ctx: tvs[0]))
    assert get_method("linear").params.__name__ == "LinearParams" and "loose" not in method_names()


# -- canonical forms ---------------------------------------------------------------------------------------

def spec(method="task_arithmetic", weights=(1.0, 0.0), **kw):
    return MergeSpec(method=method, weights=list(weights), **kw)


def test_equal_merges_have_equal_canonical_forms():
    soup_end = spec("linear", parameters={"normalize": True})
    policy = spec()
    gamma_one = spec(lines={"alpha": 1.0, "beta": 0.0})
    assert canonical_merge(soup_end) == canonical_merge(policy) == canonical_merge(gamma_one)
    assert canonical_merge(policy)["lines"] is None
    assert canonical_merge(spec("linear", [2.0, 2.0])) == canonical_merge(spec(weights=[0.5, 0.5]))
    assert canonical_merge(spec("linear", [1.0, 2.0])) == canonical_merge(spec(weights=[1 / 3, 2 / 3]))
    assert canonical_merge(spec("linear", [0.3, 0.7], parameters={"normalize": False})) == canonical_merge(
        spec(weights=[0.3, 0.7]))
    assert canonical_merge(spec(weights=[0.1 + 0.2, 0.7])) == canonical_merge(spec(weights=[0.3, 0.7]))
    # Defaults filled.
    ties = spec("ties", parameters={"density": 0.5})
    assert canonical_merge(ties) == canonical_merge(spec("ties", parameters={"density": 0.5, "normalize": True}))
    assert canonical_merge(spec("consensus", [1.0, 1.0])) == canonical_merge(
        spec("consensus", [1.0, 1.0], parameters={"k": 2, "tall_lambda": 1.0, "normalize": False}))
    lines_cfg = {"alpha": 0.3, "beta": 0.6}
    assert canonical_merge(spec(lines=lines_cfg)) == canonical_merge(spec(lines={**lines_cfg, "head_depth": "alpha"}))
    # slerp carries its resolved t.
    assert canonical_merge(spec("slerp")) == canonical_merge(spec("slerp", parameters={"t": 0.0}))
    assert canonical_merge(spec("slerp"))["parameters"] == {"t": 0.0}
    assert canonical_merge(spec("slerp", [0.3, 0.7])) == canonical_merge(spec("slerp", [0.3, 0.7],
                                                                              parameters={"t": 0.7}))
    # Only DARE depends on the seed.
    for method, params in [("linear", {}), ("task_arithmetic", {}), ("ties", {"density": 0.5}), ("consensus", {}),
                           ("slerp", {})]:
        assert canonical_merge(spec(method, [1.0, 1.0], parameters=params, seed=1)) == canonical_merge(
            spec(method, [1.0, 1.0], parameters=params, seed=2)), method
    # Plain JSON, stable through a round trip.
    form = canonical_merge(spec("dare_ties", [0.4, 0.6], parameters={"density": 0.5}, lines=lines_cfg))
    assert json.loads(json.dumps(form)) == form


def test_different_merges_have_different_canonical_forms():
    policy = spec()
    assert canonical_merge(spec(lines={"alpha": 1.0, "beta": 0.5})) != canonical_merge(policy)
    assert canonical_merge(spec(lines={"alpha": 0.5, "beta": 0.0})) != canonical_merge(policy)
    assert canonical_merge(spec(lines={"alpha": 0.3, "beta": 0.6})) != canonical_merge(
        spec(lines={"alpha": 0.3, "beta": 0.6, "head_depth": "last"}))
    assert canonical_merge(spec("ties", parameters={"density": 0.5})) != canonical_merge(policy)
    assert canonical_merge(spec("ties", parameters={"density": 0.5})) != canonical_merge(
        spec("ties", parameters={"density": 0.5, "normalize": False}))
    assert canonical_merge(spec("linear", [0.3, 0.7])) != canonical_merge(spec("linear", [0.3, 0.6]))
    assert canonical_merge(spec("slerp", parameters={"t": 0.5})) != canonical_merge(spec("slerp", parameters={"t": 0.25}))
    assert canonical_merge(spec(compute_dtype="float64")) != canonical_merge(policy)
    for method in ("dare_linear", "dare_ties"):
        a = spec(method, [1.0, 1.0], parameters={"density": 0.5}, seed=1)
        b = spec(method, [1.0, 1.0], parameters={"density": 0.5}, seed=2)
        assert canonical_merge(a) != canonical_merge(b)
        assert canonical_merge(a)["seed"] == 1
    assert canonical_merge(spec("dare_linear", parameters={"density": 0.5})) != canonical_merge(
        spec("dare_ties", parameters={"density": 0.5}))


# -- built-in entries agree with their declared properties --------------------------------------------------

EXAMPLES = {  # parameters for every built-in method (a new built-in must add one here)
    "linear": [{}, {"normalize": False}],
    "task_arithmetic": [{}],
    "ties": [{"density": 0.4}, {"density": 0.4, "normalize": False}],
    "dare_linear": [{"density": 0.6}],
    "dare_ties": [{"density": 0.6}],
    "consensus": [{"k": 2, "tall_lambda": 0.6}, {"normalize": True}],
    "slerp": [{}, {"t": 0.25}],
    "mergekit_linear": [{}, {"normalize": False}],
    "mergekit_task_arithmetic": [{}, {"normalize": True, "lambda_": 0.5}],
    "mergekit_ties": [{"density": 0.4}, {"density": [0.3, 0.5, 0.9], "rescale": True, "lambda_": 1.5}],
    "mergekit_dare_ties": [{"density": 0.6}],
    "mergekit_dare_linear": [{"density": 0.6, "normalize": True}],
    "mergekit_slerp": [{"t": 0.3}],
}
WEIGHTS = {"slerp": [0.3, 0.7], "mergekit_slerp": [1.0]}
CASES = [(m, p) for m, ps in EXAMPLES.items() for p in ps]


def test_every_builtin_has_an_example():
    assert set(method_names()) == set(EXAMPLES)


def resolved(method, params):
    weights = WEIGHTS.get(method, [0.2, 0.5, 0.3])
    s = MergeSpec(method=method, weights=weights, parameters=params)
    entry = get_method(method)
    return entry, torch.tensor(weights, dtype=torch.float64), entry.resolved_parameters(s.weights, s.parameters)


def random_tvs(n, seed=0):
    return torch.randn((n, 8, 6), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


BASE = torch.randn((8, 6), generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def ctx(entry, rows=None):
    """The merge context of one tensor (or row block), with θ0 for the methods that read it."""
    base = (BASE if rows is None else BASE[rows[0]:rows[1]]) if entry.needs_base else None
    return MergeContext("model.layers.1.mlp.up_proj.weight", seed=7, base=base)


@pytest.mark.parametrize("method,params", CASES)
def test_linear_coefficients_exactly_for_linear_methods(method, params):
    entry, w, p = resolved(method, params)
    coefficients = entry.linear_coefficients(w, p)
    assert (coefficients is not None) == (method in ("linear", "task_arithmetic", "mergekit_task_arithmetic"))
    if coefficients is not None:
        tvs = random_tvs(len(w))
        torch.testing.assert_close(entry.merge(tvs, w, p, ctx(entry)), mm.task_arithmetic(tvs, coefficients),
                                   rtol=0, atol=1e-14)


@pytest.mark.parametrize("method,params", CASES)
def test_elementwise_means_row_blocks_merge_alike(method, params):
    entry, w, p = resolved(method, params)
    tvs = random_tvs(len(w), seed=1)
    whole = entry.merge(tvs, w, p, ctx(entry))
    blocks = torch.cat([entry.merge(tvs[:, a:b], w, p, ctx(entry, (a, b))) for a, b in [(0, 3), (3, 5), (5, 8)]])
    if entry.elementwise:
        assert torch.equal(blocks, whole)
    else:  # per-tensor statistics (top-k, masks, angles): a row block is not a smaller tensor
        assert not torch.allclose(blocks, whole)
