"""The replicated study's report: every seed's verdicts and the pooled answer, with intervals over seeds and prompts.

One seed is an anecdote: each seed retrains θ0 and the policies (or, with checkpoints given, redraws the sweep's
samples), so its fronts differ by more than evaluation noise. For every comparison (a LiNeS front against a soup,
its norm-matched control and the tuned control) the study pools the seeds:
- estimate: the mean over seeds of each seed's hypervolume difference;
- interval: a two-level bootstrap — seeds drawn with replacement, then one resample of the prompts shared by the
  drawn seeds (their paired bootstrap replicates over the same resampled prompts, for both fronts) — percentiles
  at the run's level;
- verdict: the project's one rule (summary.direction): the interval lies above zero, below it, or includes it.
With three seeds the seed level has few distinct resamples: the interval is an honest but coarse statement.
The same pooling is applied to each metric of closeness to θ0 (mean over the front's weights of the paired
per-unit differences: prompts, or held-out texts for text metrics).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lines.atomic import write_text

from ..errors import PipelineError
from ..summary import direction
from ..sweep.selection import normalisation
from .build import package_versions
from .data import RunData, hypervolume_analysis, load_run, shown_points, verdict
from .explore import STYLE, forest_html, page_scripts, plotly_script
from .html import render_html
from .plots import forest_figure


def pooled_interval(estimates: list[float], draws: list[np.ndarray], n_boot: int, level: float, seed: int
                    ) -> tuple[float, float, float]:
    """(mean of the per-seed estimates, low, high): seeds resampled, then the drawn seeds' replicate of one prompt
    resample. Every seed is scored on the same prompts and its replicate b uses the same resampled prompts (one
    bootstrap seed), so a prompt that is hard is hard for every seed: taking the same replicate keeps that shared
    noise, which independent replicates per seed would average away."""
    rng = np.random.default_rng(seed)
    seeds = len(estimates)
    replicates = {len(d) for d in draws}
    if len(replicates) != 1:
        raise ValueError("every seed needs the same number of bootstrap replicates")
    stacked = np.stack(draws)  # (seeds, replicates)
    pooled = np.empty(n_boot)
    for b in range(n_boot):
        pooled[b] = stacked[rng.integers(0, seeds, seeds), rng.integers(0, stacked.shape[1])].mean()
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(pooled, [tail, 100 - tail])
    return float(np.mean(estimates)), float(low), float(high)


def metric_difference(data: RunData, a: str, b: str, metric: str, n_boot: int, seed: int
                      ) -> tuple[float, np.ndarray]:
    """Mean over the fronts' shared weights of metric(a) − metric(b), and its bootstrap draws over the units
    (prompts or texts) the metric is measured on, resampled together for both fronts."""
    fronts = data.fronts()
    by_weight = {tuple(p["weights"]): p for p in fronts[b]}
    pairs = [(p, by_weight[tuple(p["weights"])]) for p in fronts[a] if tuple(p["weights"]) in by_weight]
    per_unit = np.mean([np.asarray(pa["objectives"][metric]["per_prompt"]) - pb["objectives"][metric]["per_prompt"]
                        for pa, pb in pairs], axis=0)
    rng = np.random.default_rng(seed)
    draws = np.array([per_unit[rng.integers(0, per_unit.size, per_unit.size)].mean() for _ in range(n_boot)])
    return float(per_unit.mean()), draws


def build_study_report(study_dir: Path, seed_dirs: dict[int, Path]) -> Path:
    """study/report.md, report.html, pooled.json and forest.png from the seeds' finished runs."""
    runs = {s: load_run(d) for s, d in seed_dirs.items()}
    first = runs[min(runs)]
    # One box for every seed, so that the seeds' hypervolumes are fractions of the same box and can be averaged.
    box = normalisation([p for data in runs.values() for p in shown_points(data)], first.rewards)
    analyses = {s: hypervolume_analysis(data, box) for s, data in runs.items()}
    boot = first.config.get("bootstrap") or {}
    n_boot, level, boot_seed = boot.get("samples", 1000), boot.get("level", 0.95), boot.get("seed", 0)
    comparisons = first.comparisons()
    for seed, data in runs.items():
        if data.comparisons() != comparisons:
            raise PipelineError(f"{data.run_dir}: its fronts differ from seed {min(runs)}'s; a study pools seeds of "
                                "one config — re-run the seeds with the same config")
    pooled_hv, pooled_metrics = [], []
    for a, b in comparisons:
        estimates = [analyses[s]["diff"][(a, b)].estimate for s in runs]
        draws = [analyses[s]["draws"][a] - analyses[s]["draws"][b] for s in runs]
        est, low, high = pooled_interval(estimates, draws, n_boot, level, boot_seed)
        pooled_hv.append({"a": a, "b": b, "per_seed": dict(zip(runs, estimates)), "estimate": est, "low": low,
                          "high": high, "direction": direction(low, high)})
        for metric in first.metrics:
            per_seed = {s: metric_difference(runs[s], a, b, metric, n_boot, boot_seed) for s in runs}
            est, low, high = pooled_interval([v[0] for v in per_seed.values()], [v[1] for v in per_seed.values()],
                                             n_boot, level, boot_seed)
            pooled_metrics.append({"a": a, "b": b, "metric": metric, "per_seed": {s: v[0] for s, v in per_seed.items()},
                                   "estimate": est, "low": low, "high": high, "direction": direction(low, high)})
    study_dir.mkdir(parents=True, exist_ok=True)
    write_text(study_dir / "pooled.json", json.dumps({"seeds": list(runs), "level": level, "hypervolume": pooled_hv,
                                                      "metrics": pooled_metrics}, indent=1))
    forest_figure(pooled_hv, pooled_metrics, first.metrics, study_dir / "forest.png")
    md = render_study_markdown(first, runs, analyses, pooled_hv, pooled_metrics, level, package_versions())
    write_text(study_dir / "report.md", md)
    forest = forest_html(pooled_hv, pooled_metrics, first.metrics, level)
    write_text(study_dir / "report.html", render_html(md, study_dir, blocks={"forest.png": forest},
                                                      head=f"<style>{STYLE}</style>{plotly_script()}",
                                                      tail=page_scripts(explorer=False)))
    return study_dir


def _ci(row: dict, level: float) -> str:
    return f"{row['estimate']:+.4f} ({int(round(level * 100))}% CI {row['low']:+.4f} … {row['high']:+.4f})"


def _pooled_verdict(row: dict, level: float, what: str, better: str) -> str:
    if row["direction"] > 0:
        word = f"**{row['a']} {better} {row['b']}**"
    elif row["direction"] < 0:
        word = f"**{row['b']} {better} {row['a']}**"
    else:
        word = f"**no clear difference between {row['a']} and {row['b']}**"
    return f"{word}: {what} {_ci(row, level)}"


def render_study_markdown(first: RunData, runs: dict[int, RunData], analyses: dict, pooled_hv: list[dict],
                          pooled_metrics: list[dict], level: float, versions: dict) -> str:
    seeds = list(runs)
    out = [f"# LiNeS study: `{first.run_dir.parent.name}`, seeds {', '.join(map(str, seeds))}", "",
           "## Pooled answer", "",
           f"Hypervolume of the reward front ({', '.join(first.rewards)}), LiNeS minus the other front, every seed "
           "measured in one box (the worst and best values of each reward over all seeds' points): the mean over "
           f"seeds of each seed's difference, with a {int(round(level * 100))}% interval from a two-level bootstrap "
           "(seeds with replacement, then one resample of the prompts shared by the drawn seeds, paired across "
           "fronts). With three seeds the seed level has only ten distinct resamples, so the interval is coarse; it "
           "is what the data can say. β and λ are chosen on each seed's validation prompts: a difference compares "
           "procedures (LiNeS with its β tuned), not one β.", ""]
    out += [f"- {_pooled_verdict(row, level, 'hypervolume difference', 'beat')}" for row in pooled_hv]
    out += ["", "| comparison | " + " | ".join(f"seed {s}" for s in seeds) + " | pooled | CI low | CI high |",
            "|---|" + "---|" * (len(seeds) + 3)]
    for row in pooled_hv:
        out.append(f"| {row['a']} − {row['b']} | " + " | ".join(f"{row['per_seed'][s]:+.4f}" for s in seeds)
                   + f" | {row['estimate']:+.4f} | {row['low']:+.4f} | {row['high']:+.4f} |")
    out += ["", "## Closeness to θ0, pooled", "",
            "Each metric (lower is closer to θ0) as the mean over the fronts' shared weights of the paired "
            "difference, LiNeS minus the other front; negative: LiNeS stayed closer. Units of the interval: prompts "
            "for metrics of the responses, held-out texts for text metrics (the control domain's texts are ones no "
            "reward acts on).", "",
            "| comparison | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | pooled | CI low | CI high |",
            "|---|---|" + "---|" * (len(seeds) + 3)]
    for row in pooled_metrics:
        out.append(f"| {row['a']} − {row['b']} | {row['metric']} | "
                   + " | ".join(f"{row['per_seed'][s]:+.4g}" for s in seeds)
                   + f" | {row['estimate']:+.4g} | {row['low']:+.4g} | {row['high']:+.4g} |")
    out += ["", "![pooled differences](forest.png)", "", "## Each seed's verdicts", ""]
    for s in seeds:
        out.append(f"**seed {s}** ([report]({Path('..') / runs[s].run_dir.name / 'report' / 'report.html'}))")
        out.append("")
        out += [f"- {verdict(analyses[s], a, b)}" for a, b in runs[s].comparisons()]
        selection = runs[s].plan.get("selection") or {}
        chosen = ", ".join(f"{v}: `{sel['chosen']}`" for v, sel in selection.items())
        out += ["", f"Chosen on validation prompts: {chosen or 'nothing to choose'}.", ""]
    out += ["## Package versions", ""] + [f"- {k}: {v}" for k, v in versions.items()]
    return "\n".join(out) + "\n"
