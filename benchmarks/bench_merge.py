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


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


def run_measured(cmd: list[str]) -> dict:
    """Wall seconds and peak RSS (MiB) of one process.

    Peak RSS comes from GNU time, whose tiny process is the parent: the kernel's max-RSS counter survives
    exec, so a child forked straight from this (large) Python process would report our size instead."""
    if GNU_TIME is None:
        raise RuntimeError("GNU time (/usr/bin/time) is needed to measure peak RSS: apt-get install time")
    start = time.perf_counter()
    proc = subprocess.run([GNU_TIME, "-f", "@@maxrss_kb=%M", *cmd], env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    maxrss_kb = int(proc.stderr.rsplit("@@maxrss_kb=", 1)[1].split()[0])
    return {"wall_s": wall, "peak_rss_mib": maxrss_kb / 1024, "stdout": proc.stdout.strip()}


def median_run(cmd: list[str], repeats: int, before=None, pick=statistics.median) -> dict:
    """`repeats` runs; wall time by `pick` (median for the tools; the floor takes the fastest run, the best the
    machine's I/O reached, since a cold page cache or a busy moment only ever makes it slower)."""
    runs = []
    for _ in range(repeats):
        if before:
            before()
        runs.append(run_measured(cmd))
    return {"wall_s": pick(r["wall_s"] for r in runs),
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


def bf16_ulps(values: torch.Tensor, reference: torch.Tensor, terms_scale: torch.Tensor) -> torch.Tensor:
    """|values − reference| in bf16 spacings at the scale of the inputs, max(|θ0|, |θ_i|, |reference|): 0.5
    means correctly rounded. (At the result alone, cancellation near zero would make any rounding look huge.)"""
    scale = torch.maximum(reference.abs(), terms_scale).clamp_min(2.0 ** -126)
    return (values - reference).abs() / torch.exp2(torch.floor(torch.log2(scale)) - 7)


def compare_outputs(out_lines: Path, out_mergekit: Path, base: Path, policies: list[Path]) -> dict:
    """Both merged checkpoints against an fp64 evaluation of the same LiNeS soup, tensor by tensor."""
    from lines.layer_map import LayerMap
    from lines.schedule import LinesSchedule

    ca, cb, c0 = Checkpoint(out_lines), Checkpoint(out_mergekit), Checkpoint(base)
    cps = [Checkpoint(p) for p in policies]
    layer_map = LayerMap.from_config(c0.config, str(base))
    schedule = LinesSchedule(ALPHA, BETA, layer_map.num_layers)
    weights = weight_schedule(len(policies))
    worst = {"max_abs_diff_between_tools": 0.0, "lines_max_ulps": 0.0, "mergekit_max_ulps": 0.0}
    for name in c0.tensors:
        theta0 = c0.read(name).double()
        thetas = [c.read(name).double() for c in cps]
        update = sum(w * (t - theta0) for w, t in zip(weights, thetas))
        terms_scale = torch.stack([theta0, *thetas]).abs().amax(0)
        reference = theta0 + schedule.scale(layer_map.role(name)) * update
        a, b = ca.read(name).double(), cb.read(name).double()
        worst["max_abs_diff_between_tools"] = max(worst["max_abs_diff_between_tools"], float((a - b).abs().max()))
        worst["lines_max_ulps"] = max(worst["lines_max_ulps"], float(bf16_ulps(a, reference, terms_scale).max()))
        worst["mergekit_max_ulps"] = max(worst["mergekit_max_ulps"], float(bf16_ulps(b, reference, terms_scale).max()))
    return worst


def merge_phases(recipe: Path, out: Path, repeats: int, clear) -> dict:
    """Median split of a `lines merge` process into interpreter start + imports (torch is most of it) and the
    merge proper, measured inside the process."""
    runs = []
    for _ in range(repeats):
        clear(out)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / "merge_phases.py"), str(recipe), str(out)], env=ENV,
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        runs.append({**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": wall})
    clear(out)
    pick = lambda key: statistics.median(r[key] for r in runs)
    return {"imports_s": pick("imports_s"), "merge_s": pick("merge_s"), "wall_s": pick("wall_s"),
            "startup_s": pick("wall_s") - pick("imports_s") - pick("merge_s")}


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
                       repeats, before=lambda: clear(floor_file), pick=min)
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
        result["agreement"] = compare_outputs(out_lines, out_mk, base, pols)
        result["lines_over_mergekit"] = result["lines"]["wall_s"] / result["mergekit"]["wall_s"]
        clear(out_mk)
    result["lines_phases"] = merge_phases(recipe, out_lines, repeats, clear)  # after the comparison used out_lines
    result["lines_over_floor"] = result["lines"]["wall_s"] / floor["wall_s"]
    result["merge_only_over_floor"] = result["lines_phases"]["merge_s"] / floor["wall_s"]
    clear(out_lines)
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--repeats", type=int, default=5)
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
