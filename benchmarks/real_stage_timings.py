"""Where `make demo-real`'s time went, stage by stage, from a finished run: runs/demo_real/timings.json (written by
the job: pipelines/stage_times.py) and the policies' manifests (training steps, pairs).

    python benchmarks/real_stage_timings.py [--run runs/demo_real]

Prints two Markdown tables (benchmarks/RESULTS.md, part 9): the single policies against each other on the training
stage's held-out prompts, and the stages' times. Each stage's own seconds: a stage timed inside another is
not counted twice; "other" is the job's wall time minus every timed stage (loading models and data, the sweep's
bookkeeping, writing the cache).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def table(run: Path) -> str:
    timings = json.loads((run / "timings.json").read_text())
    stages, total = timings["stages"], timings["job_seconds"]
    lines = ["| stage | seconds | share | calls |", "|---|---|---|---|"]
    for name, t in sorted(stages.items(), key=lambda kv: -kv[1]["seconds"]):
        lines.append(f"| {name} | {t['seconds']:.0f} | {t['seconds'] / total:.0%} | {t['calls']} |")
    other = total - sum(t["seconds"] for t in stages.values())
    lines += [f"| other (loading, bookkeeping) | {other:.0f} | {other / total:.0%} | |",
              f"| **job, end to end** | **{total:.0f}** | | |", ""]
    for manifest in sorted((run / "policies").glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        steps = m["hyperparameters"]["max_steps"]
        runtime = next((row.get("train_runtime") for row in reversed(m["training_curve"]) if "train_runtime" in row),
                       None)
        rounds = m.get("training_details", {}).get("rounds", [{}])
        per_step = f"{runtime / steps:.1f} s per step" if runtime else "step time not logged"
        lines.append(f"- policy `{m['name']}`: {steps} DPO steps, {per_step}; {rounds[0].get('pairs', '?')} pairs; "
                     f"{m['wall_time_s']:.0f} s in all (pairs, training, evaluation)")
    lines.append(f"- torch threads {timings.get('threads')}, processes {timings.get('processes')}")
    return "\n".join(lines)


def policy_tradeoff(run: Path, a: str = "concise", b: str = "lexicon") -> str:
    """The two single policies on the training stage's held-out prompts (the same prompts and sampling seeds for
    both): per-prompt differences a − b, their mean with a normal 95% interval, and θ0 beside them."""
    import numpy as np

    ea, eb = (json.loads((run / "policies" / p / "manifest.json").read_text())["evaluation"] for p in (a, b))
    lines = [f"{ea['n_prompts']} held-out prompts, {ea['samples_per_prompt']} sample each:", "",
             f"| score | θ0 | {a} policy | {b} policy | {a} − {b} (95% CI) |", "|---|---|---|---|---|"]
    for name in ea["policy"]:
        pa, pb = (np.array(e["policy"][name]["per_prompt"]) for e in (ea, eb))
        d = pa - pb
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
        base = ea["base"].get(name)
        theta0 = f"{base['mean']:.3f}" if base else "—"
        lines.append(f"| {name} | {theta0} | {pa.mean():.3f} ± {ea['policy'][name]['stderr']:.3f} | "
                     f"{pb.mean():.3f} ± {eb['policy'][name]['stderr']:.3f} | {d.mean():+.3f} "
                     f"({d.mean() - half:+.3f} … {d.mean() + half:+.3f}) |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo_real")
    run = Path(parser.parse_args(argv).run)
    print(policy_tradeoff(run), "\n")
    if (run / "timings.json").is_file():
        print(table(run))


if __name__ == "__main__":
    main()
