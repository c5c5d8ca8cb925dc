"""A sweep over LoRA policies: every point served as its soup adapter agrees with the dense route."""
import json

import pytest

import sweep_fixtures as sf
import tiny
from pipelines.merge_policies import main
from pipelines.sweep.cache import SweepCache
from test_lora import make_adapter


@pytest.fixture(scope="module")
def lora_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora_sweep")
    paths = sf.build_sweep_inputs(root)
    settings = [dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
                dict(r=8, lora_alpha=8, target_modules=["q_proj", "k_proj", "up_proj"])]
    paths["policies"] = [make_adapter(paths["base"], root / f"lora_{i}", seed=i + 3, **s)
                         for i, s in enumerate(settings)]
    return root, paths


def run(tmp_path, paths, route):
    config = sf.sweep_config(tmp_path / route, paths)
    data = __import__("yaml").safe_load(config.read_text())
    data["generation"].update(temperature=0.0, max_new_tokens=12)
    data["metrics"] = [{"name": "kl", "type": "kl"}]
    data["sweep"] = {"points": 3, "lora_route": route, "points_per_batch": 3, "variants": [
        {"name": "soup", "method": "linear"},
        {"name": "lines", "method": "linear", "lines": {"alpha": 0.5, "beta": 0.5}},
        {"name": "ties", "method": "ties", "parameters": {"density": 0.5}}]}
    data["forgetting"] = {"gamma_grid": [0.5]}
    config.write_text(__import__("yaml").safe_dump(data))
    assert main(["--config", str(config), "--quiet"]) == 0
    sweep = tmp_path / route / "runs" / "tiny" / "sweep"
    points = [json.loads(line) for line in (sweep / "points.jsonl").open()]
    samples = {}
    for p in points:
        record = json.loads((sweep / "points" / f"{p['key']}.json").read_text())
        rows = SweepCache(sweep).load_samples(record["gen_key"])
        samples[(p["front"], tuple(p["weights"]))] = [r["response"] for r in rows]
    return points, samples, sweep


@pytest.mark.slow  # two sweeps end to end
def test_adapter_route_agrees_with_dense_route(lora_inputs, tmp_path):
    root, paths = lora_inputs
    dense_points, dense_samples, _ = run(tmp_path, paths, "dense")
    adapter_points, adapter_samples, sweep = run(tmp_path, paths, "adapter")
    assert (sweep / "adapters").is_dir() and len(list((sweep / "adapters").iterdir())) >= 8
    assert dense_samples.keys() == adapter_samples.keys()
    pairs = [(a, b) for key in dense_samples for a, b in zip(dense_samples[key], adapter_samples[key])]
    identical = sum(a == b for a, b in pairs) / len(pairs)
    assert identical >= 0.95, f"only {identical:.1%} of greedy responses identical"
    # The routes differ (the adapter point is not the dense merge written back): some text was generated.
    assert any(a for a, _ in pairs)
    for a, b in zip(dense_points, adapter_points):
        assert a["front"] == b["front"]
        for name in ["positive", "long"]:
            da, db = a["objectives"][name], b["objectives"][name]
            assert abs(da["mean"] - db["mean"]) <= max(da["stderr"], 1e-9), (a["front"], name)


def test_vllm_serves_points_as_lora_requests_within_max_rank(lora_inputs, tmp_path):
    """The vLLM route (fake engine): soup adapters as LoRA requests; past max_lora_rank, dense in-place loads."""
    from lines import MergeInputs
    from lines.lora import LoraAdapter as ReadAdapter
    from pipelines.generation.vllm_backend import VLLMGenerator
    from pipelines.prompts import Prompt
    from pipelines.sweep.cache import SweepCache
    from pipelines.sweep.evaluate import PointEvaluator
    from pipelines.sweep.objectives import build_objectives
    from pipelines.sweep.plan import Point
    from reward_models import parse_reward_spec
    from test_generation import FakeApi

    root, paths = lora_inputs
    prompts = [Prompt("a", "the food was"), Prompt("b", "our waiter")]
    objectives = build_objectives([parse_reward_spec({"name": "positive", "type": "vader"})], [])
    soup = Point("soup", "", "evaluation", (0.5, 0.5), {"method": "linear", "weights": [0.5, 0.5],
                                                         "parameters": {}, "lines": {"alpha": 0.5, "beta": 0.5}})
    for max_rank, expect_lora in [(16, True), (8, False)]:  # the soup of q_proj has rank 4 + 8 = 12
        api = FakeApi()
        generator = VLLMGenerator(str(paths["base"]), {"max_new_tokens": 4, "vllm": {"enable_lora": True,
                                                                                      "max_lora_rank": max_rank}},
                                  tokenizer=tiny.tiny_tokenizer(), api=api)
        with MergeInputs(paths["base"], paths["policies"]) as inputs:
            evaluator = PointEvaluator(generator, inputs, str(paths["base"]), [str(p) for p in paths["policies"]],
                                       objectives, SweepCache(tmp_path / f"c{max_rank}"), {"test": max_rank}, {},
                                       policy_copy_factory=lambda: None, adapter_dir=tmp_path / f"a{max_rank}")
            result = evaluator.evaluate(soup, prompts)
        engine = api.engines[0]
        lora = engine.calls[-1][2]
        assert result["objectives"]["positive"]["n"] == 2
        if expect_lora:  # one request per prompt, each naming the soup adapter; θ0's weights never rewritten
            assert lora is not None and {r[:3] for r in lora} == {lora[0][:3]} and lora[0][0] == "lora"
            assert not [m for m, _ in engine.rpc if m == "lines_load_merge"]
            served = ReadAdapter(lora[0][3])
            assert served.modules["model.layers.0.self_attn.q_proj.weight"].rank == 12
        else:
            assert lora is None and [m for m, _ in engine.rpc] == ["lines_load_merge"]  # built by the workers


def test_equal_points_in_one_batch_are_generated_once(lora_inputs, tmp_path):
    """The policy alone and the forgetting study's γ = 1 point are one merge: one set of samples, not two."""
    import yaml

    root, paths = lora_inputs
    config = sf.sweep_config(tmp_path, paths)
    data = yaml.safe_load(config.read_text())
    data["metrics"] = []
    data["generation"].update(max_new_tokens=4)
    data["sweep"] = {"points": 2, "lora_route": "adapter", "points_per_batch": 16, "uniform_control": {"tuned": False, "matched": False},
                     "variants": [{"name": "soup", "method": "linear"}]}
    data["forgetting"] = {"gamma_grid": [1.0]}
    config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(config), "--quiet"]) == 0
    sweep = tmp_path / "runs" / "tiny" / "sweep"
    points = [json.loads(line) for line in (sweep / "points.jsonl").open()]
    keys = {p["front"]: json.loads((sweep / "points" / f"{p['key']}.json").read_text())["gen_key"] for p in points}
    same = keys["policy[positive]"]
    assert keys["forget_lines[positive:gamma=1]"] == same and keys["forget_uniform[positive:gamma=1]"] == same
    rows = SweepCache(sweep).load_samples(same)
    assert len(rows) == 8  # 8 evaluation prompts × n = 1: not doubled by the duplicate points
    assert len(list((sweep / "samples").iterdir())) == len(set(keys.values()))
