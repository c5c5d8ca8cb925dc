"""Generation backends: seeded reproducibility, n / max_new_tokens, in-place weights, the vLLM seam."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from pipelines.errors import PipelineError
from pipelines.generation import (AdapterRef, TransformersGenerator, VLLMGenerator,
                                  choose_backend, make_generator, sample_seed)
from pipelines.generation import backend_choice
from pipelines.generation.seeded_sampling import nucleus_sample
from pipelines.generation.vllm_worker import InPlaceWeightLoader
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
    monkeypatch.setattr(backend_choice, "vllm_importable", lambda: False)
    assert choose_backend("auto")[0] == "transformers"
    with pytest.raises(PipelineError, match="vllm is not installed"):
        choose_backend("vllm")
    monkeypatch.setattr(backend_choice, "vllm_importable", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_backend("auto") == ("transformers", "no CUDA device")
    with pytest.raises(PipelineError, match="no CUDA device"):
        choose_backend("vllm")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_backend("auto")[0] == "vllm"


def test_generation_config_errors_are_one_line():
    with pytest.raises(PipelineError, match="field 'top_p'"):
        TransformersGenerator(tiny_model("llama"), tiny_tokenizer(), {"top_p": 1.5})
    with pytest.raises(PipelineError, match="field 'temprature' is not a generation setting"):
        make_generator(model_path="x", config={"temprature": 0.5})


# ---------------------------------------------------------------- vLLM seam with a fake engine
class FakeEngine:
    def __init__(self, **kwargs):
        self.kwargs, self.rpc, self.resets, self.calls = kwargs, [], 0, []

    def generate(self, requests, params, use_tqdm=True, lora_request=None):
        self.calls.append((requests, params, lora_request))
        return [SimpleNamespace(outputs=[SimpleNamespace(text=f"out{i}", token_ids=[7] * (i % 3 + 1))])
                for i in range(len(requests))]

    def collective_rpc(self, method, args=(), kwargs=None):
        self.rpc.append((method, args))
        return [len(args[0])]

    def reset_prefix_cache(self):
        self.resets += 1


class FakeApi:
    def __init__(self):
        self.engines = []

    def create_engine(self, **kwargs):
        self.engines.append(FakeEngine(**kwargs))
        return self.engines[-1]

    def sampling_params(self, **kwargs):
        return dict(kwargs)

    def lora_request(self, name, int_id, path):
        return ("lora", name, int_id, path)


def vllm_generator(tokenizer, api, **config):
    return VLLMGenerator("/models/base", {"max_new_tokens": 9, **config}, tokenizer=tokenizer, api=api)


def test_vllm_engine_is_created_once_across_weight_swaps(tokenizer):
    api = FakeApi()
    gen = vllm_generator(tokenizer, api, vllm={"weight_chunk_mb": 1})
    model = tiny_model("llama", seed=0, hidden_size=256, intermediate_size=512, num_attention_heads=4)
    state = model.state_dict()
    for point in range(3):
        assert gen.load_weights(state) == len(state)
        gen.generate(PROMPTS[:2])
    assert len(api.engines) == 1
    engine = api.engines[0]
    assert engine.kwargs["model"] == "/models/base"
    assert engine.kwargs["worker_extension_cls"] == "pipelines.generation.vllm_worker.InPlaceWeightLoader"
    per_swap = [name for _, args in engine.rpc[:len(engine.rpc) // 3] for name, _ in args[0]]
    assert per_swap == list(state)  # every tensor, in order, split into several chunks
    assert len(engine.rpc) // 3 > 1 and all(m == "load_named_tensors" for m, _ in engine.rpc)
    assert engine.resets == 3


def test_vllm_sampling_params_and_rows(tokenizer):
    api = FakeApi()
    rows = vllm_generator(tokenizer, api, n=2, temperature=0.7, top_p=0.9, seed=3).generate(PROMPTS[:2])
    requests, params, lora = api.engines[0].calls[0]
    assert lora is None
    assert requests[0] == {"prompt_token_ids": tokenizer(PROMPTS[0])["input_ids"]}
    assert params[1] == {"n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 9, "seed": sample_seed(3, "0", 1)}
    assert [(r.prompt_id, r.sample_index, r.response, r.response_tokens) for r in rows] == [
        ("0", 0, "out0", 1), ("0", 1, "out1", 2), ("1", 0, "out2", 3), ("1", 1, "out3", 1)]
    assert api.engines[0].kwargs["seed"] == 3
    greedy = FakeApi()
    vllm_generator(tokenizer, greedy, temperature=0).generate(PROMPTS[:1])
    assert greedy.engines[0].calls[0][1][0] == {"n": 1, "temperature": 0.0, "max_tokens": 9}


def test_vllm_lora_requests(tokenizer):
    api = FakeApi()
    gen = vllm_generator(tokenizer, api, vllm={"enable_lora": True, "max_lora_rank": 32})
    assert api.engines[0].kwargs["enable_lora"] and api.engines[0].kwargs["max_lora_rank"] == 32
    gen.generate(PROMPTS[:1], lora=AdapterRef("positive", "/runs/p/positive"))
    gen.generate(PROMPTS[:1], lora=AdapterRef("long", "/runs/p/long"))
    gen.generate(PROMPTS[:1], lora=AdapterRef("positive", "/runs/p/positive"))
    requests = [call[2] for call in api.engines[0].calls]
    assert requests == [("lora", "positive", 1, "/runs/p/positive"), ("lora", "long", 2, "/runs/p/long"),
                        ("lora", "positive", 1, "/runs/p/positive")]
    plain = vllm_generator(tokenizer, FakeApi())
    with pytest.raises(PipelineError, match="enable_lora"):
        plain.generate(PROMPTS[:1], lora=AdapterRef("positive", "/x"))


def test_vllm_worker_extension_loads_into_the_runner_model():
    loaded = []
    worker = type("Worker", (InPlaceWeightLoader,), {})()
    worker.model_runner = SimpleNamespace(model=SimpleNamespace(load_weights=lambda weights: loaded.extend(weights)))
    worker.device = torch.device("cpu")
    tensor = torch.ones(2)
    assert worker.load_named_tensors([("a.weight", tensor)]) == 1
    assert loaded[0][0] == "a.weight" and torch.equal(loaded[0][1], tensor)


def test_vllm_api_without_vllm_is_one_line():
    from pipelines.generation import VLLMApi

    if backend_choice.vllm_importable():
        pytest.skip("vllm is installed here")
    with pytest.raises(PipelineError, match="needs the `vllm` extra"):
        VLLMApi()
