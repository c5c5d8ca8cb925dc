"""The sweep talks to generation only through the backend protocol, and routes by the capabilities a backend states.

A backend double records every call and writes into each response which weights it was generated with, so each
capability (dense merges in place, LoRA soup adapters, several points per call, the policy's own module) is checked
for what the sweep asks of it; the transformers backend is then checked against independent references.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import sweep_fixtures as sf
import tiny
from lines import MergeInputs, merge
from lines.models import load_causal_lm
from lines.recipe import MergeSpec, canonical_merge
from pipelines.errors import PipelineError
from pipelines.generation import AdapterRef, Capabilities, GenerationBackend, MergeRequest, TransformersGenerator
from pipelines.generation.rows import GenerationRow, as_prompt_pairs
from pipelines.prompts import Prompt
from pipelines.sweep.cache import SweepCache
from pipelines.sweep.evaluate import PointEvaluator
from pipelines.sweep.objectives import Objective
from pipelines.sweep.plan import Point
from reward_models import PolicyHandle, Reward
from test_lora import make_adapter

PROMPTS = [Prompt("a", "the food was"), Prompt("b", "our waiter"), Prompt("c", "the soup")]
FULL = Capabilities(dense_weights=True, lora_adapters=True, max_points_per_call=None, max_lora_rank=None,
                    policy_model=True)


class FakeBackend:
    """Generates "<what the weights are>" for every prompt, and records every call."""

    def __init__(self, capabilities: Capabilities):
        self.capabilities = capabilities
        self.tokenizer = tiny.tiny_tokenizer()
        self.calls: list[tuple] = []
        self.weights = "theta0"  # what the dense weights are now
        self.identity = {"backend": "fake"}

    def _rows(self, prompts, text):
        return [GenerationRow(pid, p, text, 1, 3, 0, 0, (5, 6, 2)) for pid, p in as_prompt_pairs(prompts)]

    def generate(self, prompts):
        self.calls.append(("generate", self.weights))
        return self._rows(prompts, self.weights)

    def generate_adapters(self, prompts, adapters):
        assert self.capabilities.lora_adapters and self.weights == "theta0", "adapters are served on θ0"
        limit = self.capabilities.max_points_per_call
        assert limit is None or len(adapters) <= limit
        self.calls.append(("generate_adapters", [a.name for a in adapters]))
        return [self._rows(prompts, f"adapter {a.path.rsplit('/', 1)[-1]}") for a in adapters]

    def load_merge(self, request: MergeRequest):
        assert self.capabilities.dense_weights
        self.calls.append(("load_merge", request.key))
        self.weights = "theta0" if request.is_base else describe(request.spec)

    @contextlib.contextmanager
    def policy(self, adapter=None):
        assert self.capabilities.policy_model
        assert adapter is None or self.weights == "theta0", "adapters are served on θ0"
        yield PolicyHandle(SimpleNamespace(holds=self.weights if adapter is None else f"adapter {adapter.name}"),
                           self.tokenizer)

    def idle(self):
        self.calls.append(("idle",))

    def close(self):
        self.calls.append(("close",))


def describe(spec: MergeSpec) -> str:
    return str(canonical_merge(spec))


class WhatThePolicyHolds(Reward):
    """A metric of the policy's module: 1 when the module holds the weights the point asked for."""

    needs_policy = True

    def __init__(self, expected):
        super().__init__("holds")
        self.expected, self.seen = expected, []

    def _score(self, prompts, responses, policy):
        self.seen.append(policy.model.holds)
        return [float(policy.model.holds == self.expected(responses[0]))] * len(prompts)


class ResponseLength(Reward):
    def __init__(self):
        super().__init__("length")

    def _score(self, prompts, responses, policy):
        return [len(r) for r in responses]


@pytest.fixture(scope="module")
def dense_inputs(tmp_path_factory):
    return sf.build_sweep_inputs(tmp_path_factory.mktemp("protocol_dense"))


@pytest.fixture(scope="module")
def lora_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol_lora")
    paths = sf.build_sweep_inputs(root)
    paths["policies"] = [make_adapter(paths["base"], root / "lora_0", seed=3, r=4, lora_alpha=8,
                                      target_modules=["q_proj", "v_proj"]),
                         make_adapter(paths["base"], root / "lora_1", seed=4, r=8, lora_alpha=8,
                                      target_modules=["q_proj", "up_proj"])]
    return paths


def point(weights, method="linear", lines=None, parameters=None, variant="soup") -> Point:
    return Point(variant, "", "evaluation", tuple(weights), {"method": method, "weights": list(weights),
                                                            "parameters": parameters or {}, "lines": lines})


def evaluator(backend, inputs, paths, tmp_path, objectives, route="auto", copy_factory=None):
    return PointEvaluator(backend, inputs, str(paths["base"]), [str(p) for p in paths["policies"]], objectives,
                          SweepCache(tmp_path / "cache"), {"models": "test"}, {"n": 1},
                          policy_copy_factory=copy_factory or (lambda: pytest.fail("no copy expected")),
                          adapter_dir=tmp_path / "adapters", lora_route=route)


def merge_key(ev: PointEvaluator, p: Point) -> str:
    return ev.generator.request(p.merge_spec()).key


def samples(ev: PointEvaluator, p: Point) -> set[str]:
    return {row["response"] for row in ev.generator.cache.load_samples(ev.gen_key(p, PROMPTS))}


def test_the_backends_implement_the_protocol(dense_inputs):
    from pipelines.generation import VLLMGenerator
    from test_generation import FakeApi

    assert isinstance(FakeBackend(FULL), GenerationBackend)
    transformers = greedy(dense_inputs["base"])
    assert isinstance(transformers, GenerationBackend) and transformers.capabilities == FULL
    assert transformers.identity == {"backend": "transformers", "device": "cpu", "dtype": "torch.float32"}
    for settings, lora in [({}, False), ({"enable_lora": True, "max_lora_rank": 32}, True)]:
        vllm = VLLMGenerator(str(dense_inputs["base"]), {"vllm": settings}, tokenizer=tiny.tiny_tokenizer(),
                             api=FakeApi())
        assert isinstance(vllm, GenerationBackend)
        assert vllm.capabilities == Capabilities(dense_weights=True, lora_adapters=lora,
                                                 max_points_per_call=4 if lora else 1,  # max_loras
                                                 max_lora_rank=32 if lora else None, policy_model=False)


# -- dense weights ---------------------------------------------------------------------------------------------------

def test_dense_points_are_generated_with_their_own_merge_and_equal_merges_once(dense_inputs, tmp_path):
    backend = FakeBackend(replace(FULL, lora_adapters=False))
    points = [point([1, 0]), point([0.5, 0.5], lines={"alpha": 0.5, "beta": 0.5}),
              point([1, 0], method="task_arithmetic", variant="policy"),  # the same weights as the first
              point([0, 0], method="task_arithmetic", variant="base")]
    with MergeInputs(dense_inputs["base"], dense_inputs["policies"]) as inputs:
        ev = evaluator(backend, inputs, dense_inputs, tmp_path, [Objective(ResponseLength(), {"t": 1}, False)])
        results = ev.evaluate_many(points, PROMPTS)
        for p in points[:3]:
            assert samples(ev, p) == {describe(p.merge_spec())}
        assert samples(ev, points[3]) == {"theta0"}
    generated = [c for c in backend.calls if c[0] == "generate"]
    assert len(generated) == 3  # four points, three distinct merges
    assert results[0]["gen_key"] == results[2]["gen_key"] and results[0]["key"] != results[2]["key"]
    assert not any(c[0] == "generate_adapters" for c in backend.calls)


# -- LoRA soup adapters, several per call ---------------------------------------------------------------------------

def test_adapter_points_are_served_on_theta0_in_calls_of_at_most_max_points(lora_inputs, tmp_path):
    backend = FakeBackend(replace(FULL, max_points_per_call=2))
    soups = [point([w, 1 - w]) for w in (1.0, 0.75, 0.5, 0.25, 0.0)]
    ties = point([0.5, 0.5], method="ties", parameters={"density": 0.5}, variant="ties")
    base = point([0, 0], method="task_arithmetic", variant="base")
    with MergeInputs(lora_inputs["base"], lora_inputs["policies"]) as inputs:
        ev = evaluator(backend, inputs, lora_inputs, tmp_path, [Objective(ResponseLength(), {"t": 1}, False)])
        ev.evaluate_many(soups + [ties, base], PROMPTS)
        for p in soups:  # each point's samples come from its own soup adapter
            assert samples(ev, p) == {f"adapter {merge_key(ev, p)}"}
        assert samples(ev, ties) == {describe(ties.merge_spec())}  # no exact adapter form: dense
        assert samples(ev, base) == {"theta0"}  # θ0 alone never rides in an adapter call
    batches = [c[1] for c in backend.calls if c[0] == "generate_adapters"]
    assert [len(b) for b in batches] == [2, 2, 1]
    assert len({n for b in batches for n in b}) == 5  # a name is never reused for other weights


def test_a_backend_without_adapters_gets_every_point_dense(lora_inputs, tmp_path):
    backend = FakeBackend(replace(FULL, lora_adapters=False))
    with MergeInputs(lora_inputs["base"], lora_inputs["policies"]) as inputs:
        ev = evaluator(backend, inputs, lora_inputs, tmp_path, [Objective(ResponseLength(), {"t": 1}, False)])
        p = point([0.5, 0.5])
        ev.evaluate(p, PROMPTS)
        assert samples(ev, p) == {describe(p.merge_spec())}
        with pytest.raises(PipelineError, match="does not serve LoRA adapters"):
            evaluator(backend, inputs, lora_inputs, tmp_path, [], route="adapter")


def test_soups_above_the_backends_rank_limit_are_merged_densely(lora_inputs, tmp_path):
    # The soup of q_proj has rank 4 + 8 = 12.
    for limit, served_as_adapter in [(16, True), (8, False)]:
        backend = FakeBackend(replace(FULL, max_lora_rank=limit))
        with MergeInputs(lora_inputs["base"], lora_inputs["policies"]) as inputs:
            ev = evaluator(backend, inputs, lora_inputs, tmp_path / str(limit),
                           [Objective(ResponseLength(), {"t": 1}, False)])
            p = point([0.5, 0.5])
            ev.evaluate(p, PROMPTS)
            assert samples(ev, p) == ({f"adapter {merge_key(ev, p)}"} if served_as_adapter
                                      else {describe(p.merge_spec())})


# -- the policy's module, for metrics ---------------------------------------------------------------------------------

def test_metrics_of_the_policy_see_the_points_own_weights(lora_inputs, tmp_path):
    backend = FakeBackend(FULL)
    # The response names the weights the point was generated with; the metric checks the module holds the same.
    metric = WhatThePolicyHolds(lambda response: response.replace("adapter ", "adapter pt_")[:len("adapter pt_") + 16]
                                if response.startswith("adapter") else response)
    points = [point([0.5, 0.5]), point([0.5, 0.5], method="ties", parameters={"density": 0.5}, variant="ties"),
              point([0.25, 0.75])]
    with MergeInputs(lora_inputs["base"], lora_inputs["policies"]) as inputs:
        ev = evaluator(backend, inputs, lora_inputs, tmp_path, [Objective(metric, {"t": 1}, True)])
        results = ev.evaluate_many(points, PROMPTS)
        assert [r["objectives"]["holds"]["mean"] for r in results] == [1.0, 1.0, 1.0], metric.seen
        # Scored again from cached samples while the engine holds other weights: each point's are put back.
        import shutil

        for kind in ("scores", "points"):
            shutil.rmtree(tmp_path / "cache" / kind)
        backend.load_merge(ev.generator.request(point([0.9, 0.1], method="ties", parameters={"density": 0.3}
                                                      ).merge_spec()))
        generations = sum(c[0].startswith("generate") for c in backend.calls)
        again = ev.evaluate_many(points[::-1], PROMPTS)
    assert [r["objectives"]["holds"]["mean"] for r in again] == [1.0, 1.0, 1.0], metric.seen
    assert sum(c[0].startswith("generate") for c in backend.calls) == generations  # rescored, not regenerated


def test_metrics_of_sampled_tokens_get_the_sampled_ids(dense_inputs, tmp_path):
    class SeenIds(Reward):
        needs_policy = True
        uses_token_ids = True

        def __init__(self):
            super().__init__("ids")
            self.calls = []

        def score_ids(self, prompt_ids, response_ids, policy):
            self.calls.append((prompt_ids, response_ids))
            return np.array([float(len(r)) for r in response_ids])

        def _score(self, prompts, responses, policy):
            raise AssertionError("the text path must not be taken when the samples carry their ids")

    metric = SeenIds()
    backend = FakeBackend(replace(FULL, lora_adapters=False))
    with MergeInputs(dense_inputs["base"], dense_inputs["policies"]) as inputs:
        ev = evaluator(backend, inputs, dense_inputs, tmp_path, [Objective(metric, {"t": 1}, True)])
        result = ev.evaluate(point([0.5, 0.5]), PROMPTS)
    (prompt_ids, response_ids), = metric.calls
    assert response_ids == [[5, 6, 2]] * len(PROMPTS) and result["objectives"]["ids"]["mean"] == 3.0
    from reward_models.text_format import policy_prompt_ids

    assert prompt_ids == [policy_prompt_ids(backend.tokenizer, p.prompt) for p in PROMPTS]


def test_without_a_policy_module_the_metrics_use_a_copy_with_the_merge_written_in(dense_inputs, tmp_path):
    backend = FakeBackend(replace(FULL, policy_model=False, lora_adapters=False))

    class FirstWeight(Reward):
        needs_policy = True

        def __init__(self):
            super().__init__("first_weight")

        def _score(self, prompts, responses, policy):
            return [float(policy.model.model.layers[0].mlp.up_proj.weight.detach().double().sum())] * len(prompts)

    spec = {"method": "linear", "weights": [0.3, 0.7], "parameters": {}, "lines": {"alpha": 0.5, "beta": 1.0}}
    with MergeInputs(dense_inputs["base"], dense_inputs["policies"]) as inputs:
        ev = evaluator(backend, inputs, dense_inputs, tmp_path, [Objective(FirstWeight(), {"t": 1}, True)],
                       copy_factory=lambda: load_causal_lm(dense_inputs["base"], "cpu", "float32"))
        result = ev.evaluate(point(spec["weights"], lines=spec["lines"]), PROMPTS)
    recipe = {"base_model": str(dense_inputs["base"]), "method": "linear", "lines": spec["lines"],
              "models": [{"model": str(p), "weight": w} for p, w in zip(dense_inputs["policies"], spec["weights"])]}
    from lines.recipe import parse_recipe

    merged = load_causal_lm(merge(parse_recipe(recipe), tmp_path / "merged"), "cpu", "float32")
    expected = float(merged.model.layers[0].mlp.up_proj.weight.double().sum())
    assert result["objectives"]["first_weight"]["mean"] == pytest.approx(expected, rel=1e-6)
    assert not any(c[0] == "policy" for c in backend.calls)


# -- the transformers backend ----------------------------------------------------------------------------------------

def greedy(model_dir):
    return TransformersGenerator.from_pretrained(str(model_dir), {"temperature": 0, "max_new_tokens": 6,
                                                                   "batch_size": 4, "device": "cpu"})


def test_transformers_load_merge_equals_the_merged_checkpoint(dense_inputs, tmp_path):
    spec = MergeSpec(method="linear", weights=[0.3, 0.7], lines={"alpha": 0.5, "beta": 1.0})
    recipe = {"base_model": str(dense_inputs["base"]), "method": "linear", "lines": {"alpha": 0.5, "beta": 1.0},
              "models": [{"model": str(p), "weight": w} for p, w in zip(dense_inputs["policies"], [0.3, 0.7])]}
    from lines.recipe import parse_recipe

    expected = greedy(merge(parse_recipe(recipe), tmp_path / "merged")).generate(PROMPTS)
    backend = greedy(dense_inputs["base"])
    theta0 = backend.generate(PROMPTS)
    request = MergeRequest(str(dense_inputs["base"]), tuple(str(p) for p in dense_inputs["policies"]), spec, "k1")
    backend.load_merge(request)
    assert backend.generate(PROMPTS) == expected != theta0
    calls = []
    import pipelines.generation.transformers_backend as tb
    original = tb.merge_into_model
    tb.merge_into_model = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        backend.load_merge(request)  # already loaded: nothing is merged again
        assert calls == []
        backend.load_merge(replace(request, spec=MergeSpec(method="task_arithmetic", weights=[0, 0]), key="k0"))
        assert calls == [1] and backend.generate(PROMPTS) == theta0
    finally:
        tb.merge_into_model = original
    backend.close()


def test_transformers_serves_several_adapters_in_one_batch_equal_to_their_dense_merges(lora_inputs, tmp_path):
    from lines.lora_soup import write_adapter_soup
    from lines.engine import TensorMerger

    backend = greedy(lora_inputs["base"])
    specs = [MergeSpec(method="linear", weights=[0.5, 0.5]), MergeSpec(method="linear", weights=[0.2, 0.8],
                                                                     lines={"alpha": 0.5, "beta": 1.0})]
    refs = []
    with MergeInputs(lora_inputs["base"], lora_inputs["policies"]) as inputs:
        for i, spec in enumerate(specs):
            lines = TensorMerger(spec, inputs).resolve_lines(progress=False)
            write_adapter_soup(inputs, spec, tmp_path / f"soup{i}", lines, card="")
            refs.append(AdapterRef(f"soup{i}", str(tmp_path / f"soup{i}")))
    batches = []
    original = backend._run_batch
    backend._run_batch = lambda ids, seeds, names=None: batches.append(names) or original(ids, seeds, names)
    served = backend.generate_adapters(PROMPTS, refs)
    assert len(batches) == 2 and set(batches[0]) == {"soup0", "soup1"}  # 6 rows, batch size 4: mixed batches
    policies = tuple(str(p) for p in lora_inputs["policies"])
    for spec, rows, ref in zip(specs, served, refs):
        dense = greedy(lora_inputs["base"])
        dense.load_merge(MergeRequest(str(lora_inputs["base"]), policies, spec, "dense"))
        assert rows == dense.generate(PROMPTS)
        # The policy's module with the adapter active computes what the dense merge computes.
        ids = torch.tensor([[1, 5, 9, 13]])
        with backend.policy(ref) as handle, dense.policy() as reference:
            np.testing.assert_allclose(handle.model(input_ids=ids).logits.detach().numpy(),
                                       reference.model(input_ids=ids).logits.detach().numpy(), atol=1e-5)
    backend.load_merge(MergeRequest(str(lora_inputs["base"]), policies, specs[0], "dense-under-adapters"))
    with pytest.raises(RuntimeError, match="served on θ0"):
        backend.generate_adapters(PROMPTS, refs[:1])


def test_transformers_keeps_a_calls_adapters_loaded_and_evicts_only_older_ones(lora_inputs, tmp_path, monkeypatch):
    import pipelines.generation.transformers_backend as tb
    from lines.engine import TensorMerger
    from lines.lora_soup import write_adapter_soup

    monkeypatch.setattr(tb, "MAX_RESIDENT_ADAPTERS", 1)
    policies = tuple(str(p) for p in lora_inputs["policies"])
    specs = [MergeSpec(method="linear", weights=[w, 1 - w]) for w in (0.9, 0.6, 0.3)]
    refs = []
    with MergeInputs(lora_inputs["base"], lora_inputs["policies"]) as inputs:
        for i, spec in enumerate(specs):
            write_adapter_soup(inputs, spec, tmp_path / f"s{i}", TensorMerger(spec, inputs).resolve_lines(False), "")
            refs.append(AdapterRef(f"s{i}", str(tmp_path / f"s{i}")))
    backend = greedy(lora_inputs["base"])
    first = backend.generate_adapters(PROMPTS, refs[:2])  # two in one call, above the limit of one
    second = backend.generate_adapters(PROMPTS, refs[2:])
    assert set(backend.model.peft_config) == {"s2"}  # the older ones went once the call was over
    again = backend.generate_adapters(PROMPTS, refs[:1])  # reloaded on demand
    for spec, rows in zip(specs, first + second):
        dense = greedy(lora_inputs["base"])
        dense.load_merge(MergeRequest(str(lora_inputs["base"]), policies, spec, "dense"))
        assert rows == dense.generate(PROMPTS)
    assert again[0] == first[0]


def test_transformers_dense_merge_under_served_adapters_generates_the_merge(lora_inputs, tmp_path):
    """Once the live model serves adapters, a dense point is merged under them and generated with them off."""
    from lines.engine import TensorMerger
    from lines.lora_soup import write_adapter_soup

    policies = tuple(str(p) for p in lora_inputs["policies"])
    soup = MergeSpec(method="linear", weights=[0.5, 0.5])
    with MergeInputs(lora_inputs["base"], lora_inputs["policies"]) as inputs:
        write_adapter_soup(inputs, soup, tmp_path / "soup", TensorMerger(soup, inputs).resolve_lines(False), "")
    backend = greedy(lora_inputs["base"])
    theta0 = backend.generate(PROMPTS)
    backend.generate_adapters(PROMPTS, [AdapterRef("soup", str(tmp_path / "soup"))])
    ties = MergeSpec(method="ties", weights=[0.5, 0.5], parameters={"density": 0.5})
    backend.load_merge(MergeRequest(str(lora_inputs["base"]), policies, ties, "ties"))
    reference = greedy(lora_inputs["base"])
    reference.load_merge(MergeRequest(str(lora_inputs["base"]), policies, ties, "ties"))
    assert backend.generate(PROMPTS) == reference.generate(PROMPTS) != theta0
    backend.load_merge(MergeRequest(str(lora_inputs["base"]), policies, MergeSpec(method="task_arithmetic",
                                                                                 weights=[0, 0]), "theta0"))
    assert backend.generate(PROMPTS) == theta0
