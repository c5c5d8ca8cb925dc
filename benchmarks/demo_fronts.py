"""The demo's fronts with DPO policies and with PPO policies on one figure, from two finished runs (nothing computed).

    python benchmarks/demo_fronts.py runs/demo runs/demo_ppo --out benchmarks/demo_fronts_dpo_ppo.png

Left: the two rewards on the evaluation prompts — θ0, each run's single policies, its plain soup and its LiNeS front
(the β chosen on validation). Right: KL(π ‖ π0) of the same points against the first reward's weight. Both runs start
from the same θ0 recipe and share prompts and sampling, so their fronts are comparable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.report.data import _is_lines, load_run  # noqa: E402
from pipelines.sweep.selection import reward_matrix  # noqa: E402

COLORS = {"DPO": "tab:blue", "PPO": "tab:red"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dpo_run")
    parser.add_argument("ppo_run")
    parser.add_argument("--out", default="benchmarks/demo_fronts_dpo_ppo.png")
    parser.add_argument("--metric", default="kl")
    args = parser.parse_args(argv)
    fig, (front_ax, metric_ax) = plt.subplots(1, 2, figsize=(11.5, 4.8))
    for label, run_dir in (("DPO", args.dpo_run), ("PPO", args.ppo_run)):
        data = load_run(run_dir)
        rewards, color = data.rewards, COLORS[label]
        fronts = data.fronts()
        soup = next(pts for name, pts in fronts.items() if not any(p["merge"].get("lines") for p in pts))
        lines = next((pts for pts in fronts.values() if _is_lines(pts)), None)
        for pts, style, kind in ((soup, "-", "soup"), (lines, "--", "LiNeS")):
            if pts is None:
                continue
            m, s = reward_matrix(pts, rewards), reward_matrix(pts, rewards, "stderr")
            front_ax.errorbar(m[:, 0], m[:, 1], xerr=s[:, 0], yerr=s[:, 1], ls=style, marker="o", ms=3, lw=1.2,
                              capsize=2, color=color, alpha=1.0 if kind == "soup" else 0.6, label=f"{label}: {kind}")
            metric_ax.errorbar([p["weights"][0] for p in pts], [p["objectives"][args.metric]["mean"] for p in pts],
                               yerr=[p["objectives"][args.metric]["stderr"] for p in pts], ls=style, marker="o",
                               ms=3, capsize=2, color=color, alpha=1.0 if kind == "soup" else 0.6,
                               label=f"{label}: {kind}")
        for name, point in data.references().items():
            m = reward_matrix([point], rewards)[0]
            if name == "θ0":
                front_ax.scatter(m[0], m[1], marker="*", s=160, color="black", zorder=5, label="θ0" if label == "DPO"
                                 else None)
            else:
                front_ax.scatter(m[0], m[1], marker="D", s=60, color=color, edgecolor="white", zorder=5,
                                 label=f"{label}: single policies" if name.endswith(rewards[0]) else None)
    front_ax.set_xlabel(rewards[0])
    front_ax.set_ylabel(rewards[1])
    front_ax.set_title("the demo's fronts, DPO vs PPO policies (evaluation prompts, ±1 s.e.)", fontsize=9)
    front_ax.grid(alpha=0.3)
    front_ax.legend(fontsize=7)
    metric_ax.set_xlabel(f"weight of {rewards[0]}")
    metric_ax.set_ylabel(f"{args.metric} (lower is closer to θ0)")
    metric_ax.set_title(f"closeness to θ0 along the fronts: {args.metric}", fontsize=9)
    metric_ax.grid(alpha=0.3)
    metric_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
