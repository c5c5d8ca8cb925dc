"""The report's figures (matplotlib, headless)."""
from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import numpy as np  # noqa: E402

from ..pareto import orient, pareto_front  # noqa: E402
from ..sweep.selection import reward_matrix  # noqa: E402
from ..sweep.variants import FORGET_LINES, FORGET_MATCHED, FORGET_UNIFORM, MATCHED, UNIFORM  # noqa: E402
from .data import RunData  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _weight_label(weights) -> str:
    return "/".join(f"{w:g}" for w in weights)


MARKERS = ["o", "s", "^", "v", "D", "P", "X", "<", ">"]


def pareto_figure(data: RunData, out_png: Path, out_svg: Path) -> None:
    """The fronts: two rewards as one reward-vs-reward panel with closeness panels beside it; three rewards on the
    weight simplex (simplex_figure, beside pairwise panels of the non-dominated points); more as parallel
    coordinates."""
    rewards = data.rewards
    if len(rewards) == 2:
        _two_reward_figure(data, out_png, out_svg)
    elif len(rewards) == 3:
        simplex_figure(data, out_png, out_svg)
    else:
        parallel_figure(data, out_png, out_svg)


def _two_reward_figure(data: RunData, out_png: Path, out_svg: Path) -> None:
    """Reward vs reward for every front, then every closeness metric against the first reward's weight. Weight
    labels sit on the first front only (every front has the same weights, in the same order), so they never pile
    up; fronts differ by colour and marker."""
    rewards, metrics = data.rewards, data.metrics
    panels = 1 + len(metrics)
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 4.8), squeeze=False)
    fronts = data.fronts()
    refs = data.references()
    ax = axes[0][0]
    for c, (name, pts) in enumerate(fronts.items()):
        m, s = reward_matrix(pts, rewards), reward_matrix(pts, rewards, "stderr")
        ax.errorbar(m[:, 0], m[:, 1], xerr=s[:, 0], yerr=s[:, 1], marker=MARKERS[c % len(MARKERS)], ms=4, lw=1.2,
                    capsize=2, color=COLORS[c % len(COLORS)], label=_front_label(data, name, pts))
        if c == 0:
            for p, x, y in zip(pts, m[:, 0], m[:, 1]):
                ax.annotate(_weight_label(p["weights"]), (x, y), fontsize=6, alpha=0.7, xytext=(4, -8),
                            textcoords="offset points")
    _references(ax, refs, rewards, 0, 1)
    ax.set_xlabel(rewards[0])
    ax.set_ylabel(rewards[1])
    ax.set_title(f"{rewards[0]} vs {rewards[1]} (evaluation prompts, ±1 s.e.; weights on the first front)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    for ax, metric in zip(axes[0][1:], metrics):
        for c, (name, pts) in enumerate(fronts.items()):
            w0 = [p["weights"][0] for p in pts]
            m = [p["objectives"][metric]["mean"] for p in pts]
            s = [p["objectives"][metric]["stderr"] for p in pts]
            ax.errorbar(w0, m, yerr=s, marker=MARKERS[c % len(MARKERS)], ms=4, capsize=2,
                        color=COLORS[c % len(COLORS)], label=name)
        for label, p in refs.items():
            ax.axhline(p["objectives"][metric]["mean"], ls=":", lw=1, color="black" if label == "θ0" else "grey")
        ax.set_xlabel(f"weight of {rewards[0]}")
        ax.set_ylabel(f"{metric} ({_direction(data, metric)})")
        ax.set_title(f"closeness to θ0: {metric} (dotted: θ0 / single policies)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _save(fig, out_png, out_svg)


def _references(ax, refs: dict, rewards: list[str], i: int, j: int) -> None:
    for k, (label, p) in enumerate(refs.items()):
        m = reward_matrix([p], rewards)[0]
        ax.scatter(m[i], m[j], marker="*" if label == "θ0" else "D", s=140 if label == "θ0" else 70,
                   color="black" if label == "θ0" else COLORS[(k + 3) % len(COLORS)], zorder=5, edgecolor="white",
                   label=label)


def _direction(data: RunData, metric: str) -> str:
    return "higher is better" if data.points[0]["objectives"][metric]["higher_is_better"] else "lower is better"


def _save(fig, out_png: Path, out_svg: Path) -> None:
    fig.tight_layout()
    fig.savefig(out_png, dpi=130)
    fig.savefig(out_svg)
    plt.close(fig)


def _ternary(weights) -> tuple[float, float]:
    """Barycentric weights (w1, w2, w3) → the plane: w1 at the bottom left, w2 bottom right, w3 on top."""
    w1, w2, w3 = weights
    return w2 + w3 / 2, w3 * 3 ** 0.5 / 2


def _simplex_axes(ax, rewards: list[str]) -> None:
    ax.plot([0, 1, 0.5, 0], [0, 0, 3 ** 0.5 / 2, 0], color="black", lw=0.8)
    for (x, y), name, align in [((0, 0), rewards[0], "right"), ((1, 0), rewards[1], "left"),
                                ((0.5, 3 ** 0.5 / 2), rewards[2], "center")]:
        ax.annotate(f"w_{name} = 1", (x, y), fontsize=7, ha=align, xytext=(0, 6 if align == "center" else -10),
                    textcoords="offset points")
    ax.set_aspect("equal")
    ax.axis("off")


def simplex_figure(data: RunData, out_png: Path, out_svg: Path) -> None:
    """Three rewards on the weight simplex: for the plain soup and each LiNeS front, a map of every reward and of
    the first closeness metric over the weights, and the LiNeS-minus-soup difference; below them, pairwise reward
    panels with each front's non-dominated points only (a grid has no order to join its points by)."""
    rewards, metrics = data.rewards, data.metrics
    fronts = data.fronts()
    quantities = rewards + metrics[:1]
    # The first LiNeS front and the plain front of its own merge method (as the report compares them).
    pair = next(((a, b) for a, b in data.comparisons() if b != UNIFORM and not b.startswith(f"{MATCHED}[")), None)
    soup, lines_fronts = (pair[1], [pair[0]]) if pair else (next(iter(fronts)), [])
    columns = [soup, *lines_fronts]
    maps = [(q, n, False) for q in quantities for n in columns]
    if soup and lines_fronts:
        maps += [(q, lines_fronts[0], True) for q in quantities]
    ncols = len(columns) + (1 if soup and lines_fronts else 0)
    nrows = len(quantities) + 1
    fig = plt.figure(figsize=(4.2 * max(ncols, 3), 3.8 * nrows))
    for index, (quantity, front, difference) in enumerate(maps):
        row = quantities.index(quantity)
        col = len(columns) if difference else columns.index(front)
        ax = fig.add_subplot(nrows, max(ncols, 3), row * max(ncols, 3) + col + 1)
        pts = fronts[front]
        values = [p["objectives"][quantity]["mean"] for p in pts]
        if difference:
            by_weight = {tuple(p["weights"]): p["objectives"][quantity]["mean"] for p in fronts[soup]}
            values = [v - by_weight.get(tuple(p["weights"]), float("nan")) for p, v in zip(pts, values)]
        xy = [_ternary(p["weights"]) for p in pts]
        bound = max(abs(v) for v in values) or 1.0
        sc = ax.scatter([x for x, _ in xy], [y for _, y in xy], c=values, s=140, marker="h",
                        cmap="RdBu" if difference else "viridis",
                        vmin=-bound if difference else None, vmax=bound if difference else None)
        fig.colorbar(sc, ax=ax, shrink=0.7)
        _simplex_axes(ax, rewards)
        title = f"{quantity}: {front} − {soup}" if difference else f"{quantity}: {front}"
        ax.set_title(f"{title} ({_direction(data, quantity)})", fontsize=8)
    pairs = list(itertools.combinations(range(3), 2))
    for k, (i, j) in enumerate(pairs):
        ax = fig.add_subplot(nrows, max(ncols, 3), (nrows - 1) * max(ncols, 3) + k + 1)
        for c, (name, pts) in enumerate(fronts.items()):
            m = reward_matrix(pts, rewards)
            keep = pareto_front(orient(m, [pts[0]["objectives"][r]["higher_is_better"] for r in rewards]))
            ax.scatter(m[keep, i], m[keep, j], marker=MARKERS[c % len(MARKERS)], s=22, color=COLORS[c % len(COLORS)],
                       label=name)
        _references(ax, data.references(), rewards, i, j)
        ax.set(xlabel=rewards[i], ylabel=rewards[j])
        ax.set_title(f"non-dominated points: {rewards[i]} vs {rewards[j]}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    _save(fig, out_png, out_svg)


def parallel_figure(data: RunData, out_png: Path, out_svg: Path) -> None:
    """Four or more rewards: parallel coordinates of each front's non-dominated points, every reward scaled to its
    observed range (higher is better on every axis)."""
    rewards = data.rewards
    fronts = data.fronts()
    directions = [data.points[0]["objectives"][r]["higher_is_better"] for r in rewards]
    every = orient(reward_matrix([p for pts in fronts.values() for p in pts], rewards), directions)
    low, span = every.min(axis=0), np.where(every.max(axis=0) > every.min(axis=0), np.ptp(every, axis=0), 1.0)
    fig, ax = plt.subplots(figsize=(1.6 * len(rewards) + 3, 4.6))
    for c, (name, pts) in enumerate(fronts.items()):
        m = orient(reward_matrix(pts, rewards), directions)
        for k, row in enumerate(m[pareto_front(m)]):
            ax.plot(range(len(rewards)), (row - low) / span, color=COLORS[c % len(COLORS)], alpha=0.7, lw=1,
                    label=name if k == 0 else None)
    ax.set_xticks(range(len(rewards)), rewards)
    ax.set_ylabel("scaled to the observed range (1: best)")
    ax.set_title("non-dominated points of each front", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, out_png, out_svg)


def _front_label(data: RunData, name: str, pts: list[dict]) -> str:
    lines = pts[0]["merge"].get("lines")
    if not lines:
        return name
    if pts[0]["variant"] == MATCHED:
        return f"{name} (uniform, LiNeS' norm at each weight)"
    if lines.get("beta", 0) == 0:
        return f"{name} (uniform λ={lines['alpha']:g})"
    alphas = {round(p["lines_applied"]["alpha"], 4) for p in pts if p.get("lines_applied")}
    alpha = f"{alphas.pop():g}" if len(alphas) == 1 else "α(w)"
    return f"{name} (α={alpha}, β={lines['beta']:g}, {lines.get('profile', 'increasing')})"


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
    for name, pts in data.fronts().items():
        middle = pts[len(pts) // 2]
        applied = middle.get("lines_applied")
        if applied and applied["beta"] != 0:  # the λ(ℓ) applied at the front's middle weight
            twin.plot(layers, applied["block_scales"], ls="--", lw=1,
                      label=f"λ(ℓ) {name} at {_weight_label(middle['weights'])}")
    twin.set_ylabel("λ(ℓ) applied")
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
    series = {FORGET_LINES: "LiNeS edit (α=γ, β=1−γ)", FORGET_UNIFORM: "uniform γ·τ",
              FORGET_MATCHED: "uniform, LiNeS' norm"}
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
