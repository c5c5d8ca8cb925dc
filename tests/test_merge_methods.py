"""Each merge method as a pure function on tensors, against the independent fp64 numpy reference and against cases
worked by hand (ties of magnitudes, signs that cancel, degenerate angles). Fast: the mutation score's tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lines import merge_methods as mm
from reference_merge import merged_update

NAME = "model.layers.1.mlp.up_proj.weight"


def random_tvs(n: int, shape=(7, 5), seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference(tvs: torch.Tensor, weights, method: str, params: dict, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.asarray(merged_update(NAME, [t.numpy() for t in tvs], weights, method, params, seed),
                                       dtype=np.float64))


WEIGHTS = [[0.2, 0.5, 0.3], [0.6, 0.9, 0.5], [1.0, 0.0, 0.0], [-0.4, 1.0, 0.7]]


@pytest.mark.parametrize("weights", WEIGHTS, ids=["simplex", "unnormalised", "one-hot", "negative"])
@pytest.mark.parametrize("method,params,call", [
    ("linear", {}, lambda t, w: mm.linear(t, w)),
    ("linear", {"normalize": False}, lambda t, w: mm.linear(t, w, normalize=False)),
    ("task_arithmetic", {}, mm.task_arithmetic),
    ("ties", {"density": 0.4}, lambda t, w: mm.ties(t, w, 0.4)),
    ("ties", {"density": 0.7, "normalize": False}, lambda t, w: mm.ties(t, w, 0.7, normalize=False)),
    ("ties", {"density": 1.0}, lambda t, w: mm.ties(t, w, 1.0)),
    ("consensus", {"k": 2, "tall_lambda": 0.6}, lambda t, w: mm.consensus(t, w, k=2, tall_lambda=0.6)),
    ("consensus", {"k": 1, "tall_lambda": 1.0, "normalize": True},
     lambda t, w: mm.consensus(t, w, k=1, tall_lambda=1.0, normalize=True)),
    ("consensus", {}, mm.consensus),
], ids=["linear", "linear-sum", "ta", "ties", "ties-sum", "ties-dense", "consensus", "consensus-k1",
        "consensus-default"])
def test_methods_equal_the_fp64_reference(method, params, call, weights):
    tvs = random_tvs(3, seed=len(method))
    got = call(tvs, torch.tensor(weights, dtype=torch.float64))
    assert got.shape == tvs.shape[1:] and got.dtype == torch.float64
    torch.testing.assert_close(got, reference(tvs, weights, method, params), rtol=0, atol=1e-13)


@pytest.mark.parametrize("method,normalize", [("dare_linear", True), ("dare_linear", False), ("dare_ties", True),
                                              ("dare_ties", False)])
def test_dare_equals_the_reference_with_the_same_seeded_masks(method, normalize):
    tvs, weights, density = random_tvs(3, (16, 12), seed=5), [0.2, 0.5, 0.3], 0.6
    seeds = [mm.dare_seed(11, NAME, i) for i in range(3)]
    function = mm.dare_linear if method == "dare_linear" else mm.dare_ties
    got = function(tvs, torch.tensor(weights, dtype=torch.float64), density, seeds, normalize=normalize)
    expected = reference(tvs, weights, method, {"density": density, "normalize": normalize}, seed=11)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


def test_dare_drops_about_one_minus_density_and_rescales_the_rest():
    tvs = torch.ones((2, 200, 100), dtype=torch.float64)
    dropped = mm.dare_drop(tvs, 0.3, [1, 2])
    kept = dropped != 0
    assert abs(kept.double().mean().item() - 0.3) < 0.01
    assert torch.equal(dropped[kept], torch.full_like(dropped[kept], 1 / 0.3))
    assert not torch.equal(kept[0], kept[1])  # each model its own mask
    assert torch.equal(mm.dare_keep_mask((50, 4), 0.5, 9), mm.dare_keep_mask((50, 4), 0.5, 9))
    assert mm.dare_keep_mask((1000,), 0.25, 3).dtype == torch.bool


def test_dare_seeds_depend_only_on_seed_tensor_and_model():
    seeds = {mm.dare_seed(s, n, i) for s in (0, 1) for n in ("a", "b") for i in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2 ** 63 for s in seeds)
    assert mm.dare_seed(3, "x", 1) == mm.dare_seed(3, "x", 1)
    assert mm.dare_seed(0, "a\0" + "1", 0) != mm.dare_seed(0, "a", 10)  # fields are separated


def test_trim_keeps_the_largest_magnitudes():
    tv = torch.tensor([[0.1, -5.0, 2.0], [-0.3, 4.0, 0.0]], dtype=torch.float64)
    assert mm.trim_to_density(tv, 0.5).tolist() == [[0.0, -5.0, 2.0], [0.0, 4.0, 0.0]]
    assert mm.trim_to_density(tv, 0.0).abs().sum() == 0
    kept_all = mm.trim_to_density(tv, 1.0)
    assert torch.equal(kept_all, tv) and kept_all.data_ptr() != tv.data_ptr()  # a copy, never the input
    assert mm.trim_to_density(tv, 0.2).tolist() == [[0.0, -5.0, 0.0], [0.0, 0.0, 0.0]]  # round(0.2·6) = 1
    assert mm.trim_to_density(tv, 0.25).tolist() == [[0.0, -5.0, 0.0], [0.0, 4.0, 0.0]]  # round(1.5) = 2
    assert mm.trim_to_density(tv, 0.9).tolist() == [[0.1, -5.0, 2.0], [-0.3, 4.0, 0.0]]  # round(5.4) = 5


def test_ties_by_hand():
    # Entry 0: signs +3 (w .5) and −1 (w .5): elected +, mean over agreeing = 3. Entry 1: both agree.
    # Entry 2: +1 vs −1 at equal weights cancel: no elected sign, 0; at weights .2/.8, − is elected: −1.
    # Entry 3: only zeros: 0.
    tvs = torch.tensor([[3.0, 2.0, 1.0, 0.0], [-1.0, 4.0, -1.0, 0.0]], dtype=torch.float64)
    assert mm.ties(tvs, torch.tensor([0.5, 0.5], dtype=torch.float64), 1.0).tolist() == [3.0, 3.0, 0.0, 0.0]
    weights = torch.tensor([0.2, 0.8], dtype=torch.float64)
    # At .2/.8, entry 0 elects − too (.6 < .8): the disjoint mean keeps only the second model there.
    assert mm.ties(tvs, weights, 1.0).tolist() == [-1.0, pytest.approx(3.6), -1.0, 0.0]
    assert mm.ties(tvs, weights, 1.0, normalize=False).tolist() == [
        pytest.approx(-0.8), pytest.approx(3.6), pytest.approx(-0.8), 0.0]
    assert mm.elect_sign(torch.tensor([[1.0, -2.0, 0.0], [-3.0, 1.0, 0.0]])).tolist() == [-1.0, -1.0, 0.0]


def test_disjoint_merge_ignores_zeros_and_disagreeing_models():
    tvs = torch.tensor([[2.0, 0.0, -1.0], [4.0, 5.0, 3.0]], dtype=torch.float64)
    sign = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert mm.disjoint_merge(tvs, w, sign).tolist() == [pytest.approx(3.5), 5.0, 3.0]
    assert mm.disjoint_merge(tvs, w, sign, normalize=False).tolist() == [14.0, 15.0, 9.0]
    assert mm.disjoint_merge(tvs, w, -sign).tolist() == [0.0, 0.0, -1.0]  # no agreeing model: 0, not NaN


def test_consensus_by_hand():
    # τ_MTL = [2, 0.5, 0]; a model votes for an entry where |w τ| > λ·|τ_MTL − w τ|.
    tvs = torch.tensor([[1.0, 1.0, 1.0], [1.0, -0.5, -1.0]], dtype=torch.float64)
    w = torch.tensor([1.0, 1.0], dtype=torch.float64)
    # entry 0: |1| > |2−1| no for both → 0 votes. entry 1: |1| > |0.5−1|=0.5 yes; |−0.5| > |1| no → 1 vote.
    # entry 2: |1| > |−1| no; |−1| > |1| no → 0 votes.
    assert mm.consensus(tvs, w, k=1, tall_lambda=1.0).tolist() == [0.0, 0.5, 0.0]
    assert mm.consensus(tvs, w, k=1, tall_lambda=0.5).tolist() == [2.0, 0.5, 0.0]  # |1| > 0.5·|1|: both vote
    assert mm.consensus(tvs, w, k=2, tall_lambda=0.5).tolist() == [2.0, 0.0, 0.0]
    assert mm.consensus(tvs, 2 * w, k=1, tall_lambda=0.5, normalize=True).tolist() == [1.0, 0.25, 0.0]
    assert mm.consensus(tvs, 2 * w, k=1, tall_lambda=0.5).tolist() == [4.0, 1.0, 0.0]


@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 1.0])
def test_slerp_equals_the_reference(t):
    tvs = random_tvs(2, seed=3)
    torch.testing.assert_close(mm.slerp(tvs, t), reference(tvs, [1 - t, t], "slerp", {"t": t}), rtol=0, atol=1e-12)


def test_slerp_of_equal_norms_stays_on_the_sphere_and_falls_back_to_lines_when_degenerate():
    a = torch.tensor([1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0], dtype=torch.float64)
    half = mm.slerp(torch.stack([a, b]), 0.5)
    torch.testing.assert_close(half, torch.tensor([2 ** -0.5, 2 ** -0.5], dtype=torch.float64), rtol=0, atol=1e-12)
    third = mm.slerp(torch.stack([a, b]), 1 / 3)
    torch.testing.assert_close(third, torch.tensor([np.cos(np.pi / 6), np.sin(np.pi / 6)], dtype=torch.float64),
                               rtol=0, atol=1e-12)
    # Collinear, opposite, or zero: linear interpolation.
    assert mm.slerp(torch.stack([a, 3 * a]), 0.25).tolist() == [1.5, 0.0]
    assert mm.slerp(torch.stack([a, -a]), 0.25).tolist() == [0.5, 0.0]
    assert mm.slerp(torch.stack([torch.zeros(2, dtype=torch.float64), b]), 0.25).tolist() == [0.0, 0.25]
    assert mm.slerp(torch.stack([a, torch.zeros(2, dtype=torch.float64)]), 0.25).tolist() == [0.75, 0.0]
    # Nearly collinear (sin Ω below the threshold): linear; a larger angle: spherical.
    c = torch.tensor([1.0, 1e-8], dtype=torch.float64)
    assert mm.slerp(torch.stack([a, c]), 0.5).tolist() == pytest.approx([1.0, 5e-9])
    assert mm.slerp(torch.stack([a, c]), 0.5, collinear_eps=1e-12).tolist() == pytest.approx([1.0, 5e-9], rel=1e-6)


def test_normalized_and_broadcast():
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert mm.normalized(w).tolist() == [0.25, 0.75]
    tvs = torch.ones((2, 3, 4), dtype=torch.float64)
    assert mm._broadcast(w, tvs).shape == (2, 1, 1)
    assert mm.task_arithmetic(tvs, w).tolist() == torch.full((3, 4), 4.0, dtype=torch.float64).tolist()


@pytest.mark.parametrize("normalize", [True, False, None], ids=["normalized", "sum", "default"])
@pytest.mark.parametrize("method", ["dare_linear", "dare_ties"])
def test_dare_with_unnormalised_weights_and_the_default(method, normalize):
    tvs, weights = random_tvs(3, (9, 4), seed=8), [0.6, 0.9, 0.5]
    seeds = [mm.dare_seed(2, NAME, i) for i in range(3)]
    function = mm.dare_linear if method == "dare_linear" else mm.dare_ties
    kwargs = {} if normalize is None else {"normalize": normalize}
    got = function(tvs, torch.tensor(weights, dtype=torch.float64), 0.5, seeds, **kwargs)
    expected = reference(tvs, weights, method, {"density": 0.5, "normalize": normalize is not False}, seed=2)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-13)


def test_dare_seed_is_the_documented_hash():
    import hashlib

    for seed, name, index in [(0, "a", 0), (7, NAME, 2), (123456, "lm_head.weight", 1), (1, "x", 5)]:
        digest = hashlib.sha256(f"{seed}\0{name}\0{index}".encode()).digest()
        assert mm.dare_seed(seed, name, index) == int.from_bytes(digest[:8], "little") & (2 ** 63 - 1)


def test_dare_masks_follow_the_task_vectors_device():
    dropped = mm.dare_drop(torch.ones((2, 3, 4), device="meta"), 0.5, [1, 2])
    assert dropped.device.type == "meta" and dropped.shape == (2, 3, 4)


def test_disjoint_merge_counts_entries_equal_to_one():
    tvs = torch.tensor([[1.0, 1.0], [3.0, -1.0]], dtype=torch.float64)
    w = torch.tensor([1.0, 1.0], dtype=torch.float64)
    assert mm.disjoint_merge(tvs, w, torch.tensor([1.0, -1.0], dtype=torch.float64)).tolist() == [2.0, -1.0]


def rounding_past_one(sign: float) -> torch.Tensor:
    """Two collinear vectors whose cosine, computed in fp64, lands just beyond ±1 (arccos would be NaN)."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(1000):
        a = torch.rand(5, generator=generator, dtype=torch.float64)
        b = sign * 3.0 * a
        cos = (a @ b) / (a.norm() * b.norm())
        if abs(float(cos)) > 1.0:
            return torch.stack([a, b])
    raise AssertionError("no fp64 overshoot found")


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_slerp_of_collinear_vectors_whose_cosine_rounds_past_one_is_linear(sign):
    tvs = rounding_past_one(sign)
    got = mm.slerp(tvs, 0.25)
    torch.testing.assert_close(got, 0.75 * tvs[0] + 0.25 * tvs[1], rtol=0, atol=1e-15)
