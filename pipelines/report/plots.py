"""The report's figures (matplotlib, headless)."""
from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..sweep.selection import reward_matrix  # noqa: E402
from .data import RunData  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _weight_label(weights) -> str:
    return "/".join(f"{w:g}" for w in weights)


def pareto_figure(data: RunData, out_png: Path, out_svg: Path) -> None:
    """Reward-vs-reward fronts (pairwise projections for 3+ rewards) and the fluency metrics beside them."""
    rewards, metrics = data.rewards, data.metrics
    pairs = list(itertools.combinations(range(len(rewards)), 2))
    panels = len(pairs) + len(metrics)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.6), squeeze=False)
    fronts = data.fronts()
    refs = data.references()
    for ax, (i, j) in zip(axes[0], pairs):
        for c, (name, pts) in enumerate(fronts.items()):
            m, s = reward_matrix(pts, rewards), reward_matrix(pts, rewards, "stderr")
            ax.errorbar(m[:, i], m[:, j], xerr=s[:, i], yerr=s[:, j], marker="o", ms=4, lw=1.4, capsize=2,
                        color=COLORS[c % len(COLORS)], label=_front_label(data, name, pts))
            for p, x, y in zip(pts, m[:, i], m[:, j]):
                ax.annotate(_weight_label(p["weights"]), (x, y), fontsize=6, alpha=0.6,
                            xytext=(3, 3), textcoords="offset points")
        for k, (label, p) in enumerate(refs.items()):
            m = reward_matrix([p], rewards)[0]
            ax.scatter(m[i], m[j], marker="*" if label == "θ0" else "D", s=140 if label == "θ0" else 70,
                       color="black" if label == "θ0" else COLORS[(k + 3) % len(COLORS)], zorder=5,
                       edgecolor="white", label=label)
        ax.set_xlabel(rewards[i])
        ax.set_ylabel(rewards[j])
        ax.set_title(f"{rewards[i]} vs {rewards[j]} (evaluation prompts, ±1 s.e.)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax, metric in zip(axes[0][len(pairs):], metrics):
        for c, (name, pts) in enumerate(fronts.items()):
            w0 = [p["weights"][0] for p in pts]
            m = [p["objectives"][metric]["mean"] for p in pts]
            s = [p["objectives"][metric]["stderr"] for p in pts]
            ax.errorbar(w0, m, yerr=s, marker="o", ms=4, capsize=2, color=COLORS[c % len(COLORS)], label=name)
        for label, p in refs.items():
            ax.axhline(p["objectives"][metric]["mean"], ls=":", lw=1, color="black" if label == "θ0" else "grey")
        ax.set_xlabel(f"weight of {rewards[0]}")
        ax.set_ylabel(f"{metric} ({'higher' if data.points[0]['objectives'][metric]['higher_is_better'] else 'lower'}"
                      " is better)")
        ax.set_title(f"closeness to θ0: {metric} (dotted: θ0 / single policies)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=130)
    fig.savefig(out_svg)
    plt.close(fig)


def _front_label(data: RunData, name: str, pts: list[dict]) -> str:
    lines = pts[0]["merge"].get("lines")
    if not lines:
        return name
    if lines.get("beta", 0) == 0:
        return f"{name} (uniform λ={lines['alpha']:g})"
    return f"{name} (α={lines['alpha']}, β={lines['beta']:g})"


def diagnostics_figure(data: RunData, out_png: Path) -> bool:
    """‖τ_i‖ and cos(τ_i, τ_j) per decoder block, with the λ(ℓ) curves of the LiNeS variants overlaid."""
    diag = data.diagnostics
    if not diag:
        return False
    layers = [g for g in diag["groups"] if g != "outside"]
    n = len(diag["norms"][0])
    names = data.rewards
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i in range(n):
        ax1.plot(layers, [diag["norms"][g][i] for g in range(len(layers))], marker="o", label=f"‖τ_{names[i]}‖")
    ax1.set(xlabel="decoder block ℓ", ylabel="‖τ‖₂ over the block", title="task-vector norm per block")
    for i, j in itertools.combinations(range(n), 2):
        ax2.plot(layers, [diag["cosines"][g][i][j] for g in range(len(layers))], marker="o",
                 label=f"cos(τ_{names[i]}, τ_{names[j]})")
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set(xlabel="decoder block ℓ", ylabel="cosine", title="where the rewards' updates agree or conflict")
    twin = ax2.twinx()
    L = len(layers)
    for name, pts in data.fronts().items():
        lines = pts[0]["merge"].get("lines")
        if lines and isinstance(lines.get("alpha"), (int, float)):
            lam = [lines["alpha"] + lines["beta"] * l / max(L - 1, 1) for l in range(L)]
            twin.plot(layers, lam, ls="--", lw=1, label=f"λ(ℓ) {name}")
        elif lines:
            lam = [1.0 + lines["beta"] * l / max(L - 1, 1) for l in range(L)]
            twin.plot(layers, lam, ls="--", lw=1, label=f"λ(ℓ) {name} (α auto shown as 1)")
    twin.set_ylabel("λ(ℓ)")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    twin.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out_png, dpi=130)
    plt.close(fig)
    return True


def forgetting_figure(data: RunData, out_png: Path) -> bool:
    """Each policy's own reward vs each fluency metric: LiNeS edit (α=γ, β=1−γ) vs uniform scaling γ·τ and the
    norm-matched uniform scaling (the LiNeS edit's magnitude, no depth profile)."""
    series = {"forget_lines": "LiNeS edit (α=γ, β=1−γ)", "forget_uniform": "uniform γ·τ",
              "forget_matched": "uniform, LiNeS' norm"}
    points = [p for p in data.points if p["variant"] in series]
    if not points or not data.metrics:
        return False
    metrics, rewards = data.metrics, data.rewards
    fig, axes = plt.subplots(len(rewards), len(metrics), figsize=(5 * len(metrics), 4 * len(rewards)), squeeze=False)
    for r, reward in enumerate(rewards):
        for m, metric in enumerate(metrics):
            ax = axes[r][m]
            for c, (variant, label) in enumerate(series.items()):
                pts = [p for p in points if p["variant"] == variant and p["candidate"].startswith(f"{reward}:")]
                pts.sort(key=lambda p: float(p["candidate"].split("gamma=")[1]))
                x = [p["objectives"][metric]["mean"] for p in pts]
                y = [p["objectives"][reward]["mean"] for p in pts]
                ax.errorbar(x, y, xerr=[p["objectives"][metric]["stderr"] for p in pts],
                            yerr=[p["objectives"][reward]["stderr"] for p in pts], marker="o", capsize=2,
                            color=COLORS[c], label=label)
                for p, xi, yi in zip(pts, x, y):
                    ax.annotate(p["candidate"].split(":")[1], (xi, yi), fontsize=6, xytext=(3, 3),
                                textcoords="offset points")
            ax.set(xlabel=metric, ylabel=f"{reward} (own reward)", title=f"policy {reward}: reward vs {metric}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return True


def forest_figure(pooled_hv: list[dict], pooled_metrics: list[dict], metrics: list[str], out_png: Path) -> None:
    """Each comparison's difference per seed (dots) and pooled (bar: the interval over seeds and units)."""
    panels = [("hypervolume difference (higher: LiNeS better)", pooled_hv)]
    panels += [(f"{m} difference (lower: LiNeS closer to θ0)", [r for r in pooled_metrics if r["metric"] == m])
               for m in metrics]
    rows = len(pooled_hv)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 0.5 * rows + 1.6), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels):
        for y, row in enumerate(data):
            ax.plot([row["low"], row["high"]], [y, y], color="black", lw=2)
            ax.plot(row["estimate"], y, "s", color="black")
            for k, (seed, value) in enumerate(row["per_seed"].items()):
                ax.plot(value, y + 0.15, "o", ms=4, color=COLORS[k % len(COLORS)],
                        label=f"seed {seed}" if y == 0 else None)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(data)), [f"{r['a']} − {r['b']}" for r in data], fontsize=7)
        ax.set_title(title, fontsize=8)
        ax.grid(alpha=0.3, axis="x")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_png, dpi=130)
    plt.close(fig)
