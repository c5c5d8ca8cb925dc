"""Run every benchmark and write benchmarks/RESULTS.md and benchmarks/results.json.

    make bench        # installs the `bench` extra (mergekit, psutil), then runs this

Parts: (1) merge side by side with mergekit and the I/O floor, (2) scaling with model size and policy count.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_merge  # noqa: E402


def machine_description() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {"torch": torch.__version__}
    for pkg in ["mergekit", "safetensors", "transformers"]:
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            versions[pkg] = "not installed"
    return (f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, no GPU; {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; "
            + ", ".join(f"{k} {v}" for k, v in versions.items()))


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def merge_section(results: dict) -> list[str]:
    out = ["## 1. Merge: `lines merge` vs `mergekit-yaml` vs the I/O floor", "",
           f"θ0 + 2 policies in bf16, LiNeS rewarded soup with weights {bench_merge.WEIGHTS}, α {bench_merge.ALPHA}, "
           f"β {bench_merge.BETA}; mergekit: `task_arithmetic` with per-model weight gradient "
           f"[α·w_i, (α+β)·w_i]. Median wall time of {results['repeats']} runs per tool (each its own process), "
           "peak RSS = the process's maximum resident set. Inputs sit in the page cache for every run.", "",
           "| size | inputs | floor | lines | mergekit | lines/mergekit | lines/floor | lines peak RSS | mergekit peak RSS |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in results["side_by_side"]:
        out.append(f"| {r['size']} | {gib(r['input_bytes'])} | {r['floor']['wall_s']:.2f} s | "
                   f"{r['lines']['wall_s']:.2f} s | {r['mergekit']['wall_s']:.2f} s | {r['lines_over_mergekit']:.2f}× | "
                   f"{r['lines_over_floor']:.2f}× | {r['lines']['peak_rss_mib']:.0f} MiB | "
                   f"{r['mergekit']['peak_rss_mib']:.0f} MiB |")
    out += ["", "Agreement with an fp64 evaluation of the same soup (errors in bf16 spacings at the scale of the "
                "inputs; 0.5 = correctly rounded):", "",
            "| size | max \\|lines − mergekit\\| | lines error | mergekit error |", "|---|---|---|---|"]
    for r in results["side_by_side"]:
        a = r["agreement"]
        out.append(f"| {r['size']} | {a['max_abs_diff_between_tools']:.3g} | {a['lines_max_ulps']:.3f} ulp | "
                   f"{a['mergekit_max_ulps']:.2f} ulp |")
    large = next(r for r in results["side_by_side"] if r["size"] == "large")
    targets = [("wall ≤ 0.4× mergekit", large["lines_over_mergekit"] <= 0.4, f"{large['lines_over_mergekit']:.2f}×"),
               ("wall ≤ 2× floor", large["lines_over_floor"] <= 2.0, f"{large['lines_over_floor']:.2f}×"),
               ("peak RSS ≤ 512 MiB", large["lines"]["peak_rss_mib"] <= 512,
                f"{large['lines']['peak_rss_mib']:.0f} MiB")]
    out += ["", "Targets on \"large\":", ""]
    out += [f"- {name}: {'met' if ok else 'NOT met'} ({value})" for name, ok, value in targets]
    out += ["", "Individual runs (s): " + "; ".join(
        f"{r['size']} lines {r['lines']['runs_wall_s']}, mergekit {r['mergekit']['runs_wall_s']}, "
        f"floor {r['floor']['runs_wall_s']}" for r in results["side_by_side"]), ""]
    return out


def scaling_section(results: dict, plot: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, marker in [("scaling_size", "model size (2 policies)", "o"),
                               ("scaling_policies", "policies (medium)", "s")]:
        rows = results[key]
        x = [r["input_bytes"] / 2**30 for r in rows]
        axes[0].plot(x, [r["lines"]["wall_s"] for r in rows], marker=marker, label=f"lines: {label}")
        axes[0].plot(x, [r["floor"]["wall_s"] for r in rows], marker=marker, linestyle=":", label=f"floor: {label}")
        axes[1].plot(x, [r["lines"]["peak_rss_mib"] for r in rows], marker=marker, label=f"lines: {label}")
    axes[0].set(xlabel="bytes read (GiB)", ylabel="wall time (s)", title="time vs bytes read")
    axes[1].set(xlabel="bytes read (GiB)", ylabel="peak RSS (MiB)", title="memory vs bytes read", ylim=(0, None))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    out = ["## 2. Scaling: time grows with bytes read, memory stays flat", "", f"![scaling]({plot.name})", "",
           "| configuration | bytes read | lines wall | floor | lines peak RSS | s per GiB read |",
           "|---|---|---|---|---|---|"]
    for key in ["scaling_size", "scaling_policies"]:
        for r in results[key]:
            out.append(f"| {r['size']}, {r['policies']} policies | {gib(r['input_bytes'])} | {r['lines']['wall_s']:.2f} s "
                       f"| {r['floor']['wall_s']:.2f} s | {r['lines']['peak_rss_mib']:.0f} MiB | "
                       f"{r['lines']['wall_s'] / (r['input_bytes'] / 2**30):.2f} |")
    return out + [""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    args = parser.parse_args(argv)
    results = {"machine": machine_description(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "repeats": args.repeats}
    results.update(bench_merge.main(["--work", str(args.work), "--repeats", str(args.repeats),
                                     "--json", str(args.work / "merge_results.json")]))
    lines = ["# Benchmark results", "", f"Machine: {results['machine']}.", "",
             f"Produced by `make bench` (benchmarks/run_all.py) on {results['date']}.", ""]
    lines += merge_section(results)
    lines += scaling_section(results, HERE / "scaling.png")
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
