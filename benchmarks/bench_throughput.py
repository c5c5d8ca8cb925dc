"""CPU throughput: transformers generation batched vs one prompt at a time, and batched reward scoring.

    python benchmarks/bench_throughput.py       # (run through `make bench` / run_all.py, which writes RESULTS.md)

Generation: the demo-size Llama (benchmarks/demo_model.py), 128 prompts, 48 new tokens, temperature 1, seed 0,
through `make_generator(..., {"backend": "transformers", ...})`, at batch_size 64 and 1 on the same prompts and
seed; generated tokens are counted from the rows' `response_tokens`. Rows are seeded per sample, so both batch
sizes should give the same responses: the share that agree is reported.

Scoring: 1024 (prompt, response) pairs with English responses (three template review sentences each, see
`scoring_pairs`) through `score_rewards`, in calls of B pairs (B = 8 and 64), for VADER, length, and two locally built HF sequence-classification reward models read
through reward type `hf` with `batch_size: B`: one the size of the demo policy (hidden 128, 4 layers) and the
tests' tiny one (tests/tiny.py: tiny_reward_model_dir, hidden 16, 3 layers).

Threads: everything runs with 1 torch thread (as bench_sweep.py), and a short side measurement compares 1 thread
with torch's default for one batch of generation and one in-memory merge, since that setting dominates CPU timings
on a shared machine. benchmarks/gpu_check.py reports generated tokens/s for vLLM (and transformers) on a GPU.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import demo_model  # noqa: E402  (sets HF_HUB_OFFLINE before transformers is imported)
import machine_load  # noqa: E402

SCORE_BATCH_SIZES = (8, 64)
SCORE_SAMPLES = 1024


def gen_config(batch_size: int, max_new_tokens: int) -> dict:
    return {"backend": "transformers", "temperature": 1.0, "max_new_tokens": max_new_tokens, "n": 1, "seed": 0,
            "batch_size": batch_size}


def time_generation(base: Path, prompts, batch_size: int, max_new_tokens: int, repeats: int) -> tuple[dict, list]:
    from pipelines.generation.backend_choice import make_generator

    generator = make_generator(str(base), gen_config(batch_size, max_new_tokens))
    walls, rows = demo_model.timed_generations(generator, prompts, repeats, warmup=2)
    tokens = sum(r.response_tokens for r in rows)
    wall = statistics.median(walls)
    return {"batch_size": batch_size, "prompts": len(prompts), "generated_tokens": tokens, "wall_s": wall,
            "tokens_per_s": tokens / wall, "prompts_per_s": len(prompts) / wall,
            "runs_wall_s": [round(w, 3) for w in walls]}, rows


def build_reward_models(work: Path, tokenizer_dir: Path) -> dict[str, Path]:
    """A demo-size Llama RM (the demo tokenizer) and the tests' tiny one, saved like real RMs (reused)."""
    import tiny
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    demo_rm, tiny_rm = work / "rm-demo", work / "rm-tiny"
    if not (demo_rm / "config.json").exists():
        import torch

        torch.manual_seed(0)
        cfg = LlamaConfig(**demo_model.CONFIG, num_labels=1, pad_token_id=0, bos_token_id=1, eos_token_id=2)
        LlamaForSequenceClassification(cfg).save_pretrained(str(demo_rm))
        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(demo_rm))
    if not (tiny_rm / "config.json").exists():
        tiny.tiny_reward_model_dir(tiny_rm)
    return {"hf (demo size: hidden 128, 4 layers)": demo_rm, "hf (tests' tiny: hidden 16, 3 layers)": tiny_rm}


def scoring_pairs(prompts) -> tuple[list[str], list[str]]:
    """SCORE_SAMPLES (prompt, response) pairs in English: each response three template review sentences (about
    the length of a 48-token generation). The random demo policy writes byte soup, on which VADER finds no
    lexicon words and runs several times faster than on text, so its generations would flatter the rule rewards."""
    sentences = demo_model.corpus(3 * SCORE_SAMPLES, seed=2)
    responses = [" ".join(sentences[3 * i:3 * i + 3]) for i in range(SCORE_SAMPLES)]
    texts = [prompts[i % len(prompts)].prompt for i in range(SCORE_SAMPLES)]
    return texts, responses


def time_scoring(spec: dict, texts: list[str], responses: list[str], batch_size: int, repeats: int) -> dict:
    from reward_models import build_reward, score_rewards

    reward = build_reward({**spec, "batch_size": batch_size} if spec["type"] == "hf" else spec)
    score_rewards([reward], texts[:batch_size], responses[:batch_size])  # warm-up (lexicon, first forward)
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            score_rewards([reward], texts[i:i + batch_size], responses[i:i + batch_size])
        walls.append(time.perf_counter() - start)
    wall = statistics.median(walls)
    return {"batch_size": batch_size, "samples": len(texts), "wall_s": wall, "samples_per_s": len(texts) / wall,
            "runs_wall_s": [round(w, 4) for w in walls]}


def thread_sensitivity(paths: dict, prompts, max_new_tokens: int, repeats: int, default_threads: int) -> list[dict]:
    """One batch of 32 prompts and one in-memory merge (LiNeS α auto), at 1 thread and at torch's default.
    Small on purpose: a starved multi-threaded run on a busy machine can take 100× longer than it should."""
    import torch

    import lines
    from pipelines.generation.backend_choice import make_generator

    current = torch.get_num_threads()
    out = []
    batch = prompts[:32]
    spec = lines.MergeSpec(weights=[0.3, 0.7], lines={"alpha": "auto", "beta": 0.5})
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        generator = make_generator(str(paths["base"]), gen_config(len(batch), max_new_tokens))
        generator.generate(batch[:2])
        gen_walls, merge_walls = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            rows = generator.generate(batch)
            gen_walls.append(time.perf_counter() - start)
            if gen_walls[-1] > 10:  # a starved multi-threaded run: one is enough to show it
                break
        with lines.MergeInputs(paths["base"], paths["policies"]) as inputs:
            lines.merge_into_model(generator.model, inputs, spec)
            for _ in range(max(5, repeats)):
                start = time.perf_counter()
                lines.merge_into_model(generator.model, inputs, spec)
                merge_walls.append(time.perf_counter() - start)
        tokens = sum(r.response_tokens for r in rows)
        out.append({"threads": threads, "prompts": len(batch), "generate_wall_s": statistics.median(gen_walls),
                    "generate_tokens_per_s": tokens / statistics.median(gen_walls),
                    "generate_runs_wall_s": [round(w, 3) for w in gen_walls],
                    "merge_into_model_s": statistics.median(merge_walls),
                    "merge_runs_s": [round(w, 4) for w in merge_walls]})
    torch.set_num_threads(current)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each timing (batch size 1: at most 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--skip-thread-check", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch

    from pipelines.prompts import Prompt

    default_threads = torch.get_num_threads()  # torch's own choice for this machine, before any override
    if args.threads:
        torch.set_num_threads(args.threads)
    # The tests' tiny RM has 64 positions, so most pairs are truncated; that is expected here, not news per call.
    logging.getLogger("reward_models.hf_reward_model").setLevel(logging.ERROR)
    paths = demo_model.build(args.work / "demo")
    prompts = [Prompt(i, t) for i, t in demo_model.prompts(args.prompts)]
    probe = machine_load.LoadProbe()
    results = {"model": demo_model.describe(args.work / "demo"), "torch_threads": torch.get_num_threads(),
               "torch_default_threads": default_threads,
               "max_new_tokens": args.max_new_tokens, "repeats": args.repeats, "generation": []}
    rows_by_batch = {}
    for batch_size, repeats in [(64, args.repeats), (1, min(2, args.repeats))]:
        print(f"[throughput] generation, batch_size {batch_size}", flush=True)
        result, rows = time_generation(paths["base"], prompts, batch_size, args.max_new_tokens, repeats)
        print(f"[throughput]   {result['tokens_per_s']:.0f} tokens/s ({result['wall_s']:.2f} s)", flush=True)
        results["generation"].append(result)
        rows_by_batch[batch_size] = rows
    agree = sum(a.response == b.response for a, b in zip(rows_by_batch[64], rows_by_batch[1]))
    results["batch_agreement"] = agree / len(prompts)
    results["batched_speedup"] = results["generation"][0]["tokens_per_s"] / results["generation"][1]["tokens_per_s"]

    texts, responses = scoring_pairs(prompts)
    results["scoring_text"] = {"pairs": len(texts), "response_chars_mean": sum(map(len, responses)) / len(responses)}
    rms = build_reward_models(args.work / "reward-models", paths["base"])
    specs = {"vader": {"name": "positive", "type": "vader"}, "length": {"name": "long", "type": "length"}}
    specs.update({label: {"name": "rm", "type": "hf", "path": str(path)} for label, path in rms.items()})
    results["scoring"] = []
    for label, spec in specs.items():
        for batch_size in SCORE_BATCH_SIZES:
            print(f"[throughput] scoring {label}, batch {batch_size}", flush=True)
            result = time_scoring(spec, texts, responses, batch_size, args.repeats)
            results["scoring"].append({"reward": label, **result})
            print(f"[throughput]   {result['samples_per_s']:.0f} samples/s", flush=True)
    if not args.skip_thread_check:
        print("[throughput] torch threads: 1 vs default (one batch of generation, one in-memory merge)", flush=True)
        results["threads"] = thread_sensitivity(paths, prompts, args.max_new_tokens, 2, default_threads)
    results["load"] = probe.stop()
    print(f"[throughput] {machine_load.describe(results['load'])}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
