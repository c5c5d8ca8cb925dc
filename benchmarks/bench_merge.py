"""Merge benchmarks: `lines merge` vs `mergekit-yaml` vs the I/O floor, and how time and memory scale.

    python benchmarks/bench_merge.py            # (run through `make bench`, which writes RESULTS.md)

Each tool runs as its own process; wall time is measured around the process and peak RSS is the process's
ru_maxrss (os.wait4). Inputs are in the page cache for every run (they were just written or read), so the
floor measures memory-speed I/O on this machine, and each configuration is repeated and the median kept.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import synthetic_checkpoints  # noqa: E402
from lines.checkpoint import Checkpoint  # noqa: E402

BIN = Path(sys.executable).parent
WEIGHTS = (0.3, 0.7)
ALPHA, BETA = 0.3, 0.6
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_measured(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS (MiB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": stdout.strip()}


def median_run(cmd: list[str], repeats: int, before=None) -> dict:
    runs = []
    for _ in range(repeats):
        if before:
            before()
        runs.append(run_measured(cmd))
    return {"wall_s": statistics.median(r["wall_s"] for r in runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "runs_wall_s": [round(r["wall_s"], 3) for r in runs]}


def weight_schedule(n: int) -> list[float]:
    return list(WEIGHTS) if n == 2 else [1.0 / n] * n


def lines_recipe(base: Path, policies: list[Path], shard: str, path: Path) -> Path:
    weights = weight_schedule(len(policies))
    path.write_text(yaml.safe_dump({
        "base_model": str(base), "models": [{"model": str(p), "weight": w} for p, w in zip(policies, weights)],
        "method": "linear", "lines": {"alpha": ALPHA, "beta": BETA}, "max_shard_size": shard}))
    return path


def mergekit_config(base: Path, policies: list[Path], path: Path) -> Path:
    """task_arithmetic with the layer gradient [α·w_i, (α+β)·w_i]: the same LiNeS soup in mergekit's terms."""
    weights = weight_schedule(len(policies))
    path.write_text(yaml.safe_dump({
        "merge_method": "task_arithmetic", "base_model": str(base), "dtype": "bfloat16",
        "models": [{"model": str(p), "parameters": {"weight": [ALPHA * w, (ALPHA + BETA) * w]}}
                   for p, w in zip(policies, weights)]}))
    return path


def compare_outputs(a: Path, b: Path) -> dict:
    """Max abs difference between two merged checkpoints, tensor by tensor, and how many bf16 ulps it is."""
    ca, cb = Checkpoint(a), Checkpoint(b)
    worst, worst_ulps, differing, total, worst_name = 0.0, 0.0, 0, 0, ""
    for name in ca.tensors:
        x, y = ca.read(name).float(), cb.read(name).float()
        diff = (x - y).abs()
        # One bf16 ulp at |x| is 2^(exponent − 7); a difference of a few ulps is rounding, not a different merge.
        ulp = torch.exp2(torch.floor(torch.log2(torch.maximum(x.abs(), y.abs()).clamp_min(1e-30))) - 7)
        m = float(diff.max())
        if m > worst:
            worst, worst_name = m, name
        worst_ulps = max(worst_ulps, float((diff / ulp).max()))
        differing += int((diff > 0).sum())
        total += diff.numel()
    return {"max_abs_diff": worst, "max_diff_bf16_ulps": worst_ulps, "worst_tensor": worst_name,
            "fraction_differing": differing / total}


def bench_size(size: str, work: Path, repeats: int, with_mergekit: bool, policies: int = 2) -> dict:
    base, pols = synthetic_checkpoints.build(size, work, policies)
    shard = synthetic_checkpoints.SIZES[size]["shard"]
    tag = f"{size}-{policies}"
    out_lines, out_mk, floor_file = work / f"out-lines-{tag}", work / f"out-mergekit-{tag}", work / f"floor-{tag}.bin"
    input_bytes = sum(f.stat().st_size for d in [base, *pols] for f in d.glob("*.safetensors"))
    clear = lambda *paths: [shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                            for p in paths]
    result = {"size": size, "policies": policies, "input_bytes": input_bytes}
    floor = median_run([sys.executable, str(HERE / "io_floor.py"), str(floor_file), str(base), *map(str, pols)],
                       repeats, before=lambda: clear(floor_file))
    clear(floor_file)
    result["floor"] = floor
    recipe = lines_recipe(base, pols, shard, work / f"recipe-{tag}.yaml")
    result["lines"] = median_run([str(BIN / "lines"), "merge", str(recipe), str(out_lines), "--quiet"], repeats,
                                 before=lambda: clear(out_lines))
    if with_mergekit:
        config = mergekit_config(base, pols, work / f"mergekit-{tag}.yaml")
        shard_params = str(synthetic_checkpoints.parse_size(shard) // 2)  # mergekit counts parameters (bf16)
        result["mergekit"] = median_run(
            [str(BIN / "mergekit-yaml"), str(config), str(out_mk), "--no-copy-tokenizer", "--out-shard-size",
             shard_params], repeats, before=lambda: clear(out_mk))
        result["agreement"] = compare_outputs(out_lines, out_mk)
        result["lines_over_mergekit"] = result["lines"]["wall_s"] / result["mergekit"]["wall_s"]
        clear(out_mk)
    result["lines_over_floor"] = result["lines"]["wall_s"] / floor["wall_s"]
    clear(out_lines)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=HERE / "merge_results.json")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"side_by_side": [], "scaling_size": [], "scaling_policies": []}
    for size in ["large", "medium"]:
        print(f"[merge] side by side: {size}", flush=True)
        results["side_by_side"].append(bench_size(size, args.work, args.repeats, with_mergekit=True))
    for size in ["small"]:
        print(f"[merge] scaling: {size}", flush=True)
        results["scaling_size"].append(bench_size(size, args.work, args.repeats, with_mergekit=False))
    results["scaling_size"] = sorted(results["scaling_size"] + results["side_by_side"],
                                     key=lambda r: r["input_bytes"])
    for n in [2, 4, 8]:
        print(f"[merge] scaling: medium with {n} policies", flush=True)
        if n == 2:
            results["scaling_policies"].append(next(r for r in results["side_by_side"] if r["size"] == "medium"))
        else:
            results["scaling_policies"].append(bench_size("medium", args.work, args.repeats, False, policies=n))
    args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
