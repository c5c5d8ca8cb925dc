"""The replicated study's report: seeds are the replicates, and the verdict is an inference over them.

Each seed retrains θ0 and the policies (or, with checkpoints given, redraws the sweep's samples), so the unit of
replication is the seed: for every comparison (a LiNeS front against the plain front of its method, its norm-matched
control and the tuned control) each seed gives one hypervolume difference, every seed measured in one box fixed by
every seed's θ0 and single policies (data.anchor_points), and the pooled answer is
- the mean of the per-seed differences with its t-interval, and the exact sign-flip p-value over seeds
  (pipelines/seed_inference.py);
- a verdict only for the comparisons declared as the family (study.family in the config; default: all), their
  p-values Holm-adjusted together; "no different" only when TOST shows |difference| < study.equivalence_margin,
  otherwise "not shown";
- the design: number of seeds, the smallest p-value their sign-flip test can give, and the minimum detectable effect
  at the observed seed-to-seed spread.
Within a seed, the prompt bootstrap stays the interval of that seed's estimate (each seed's report). Beside the
hypervolume: reward at matched KL(π‖π0) (report/matched_kl.py), which needs no reference point, KL per response and
per token, and each closeness metric as an estimate with its t-interval over seeds (no verdict).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from lines.atomic import write_text

from ..errors import PipelineError
from ..seed_inference import smallest_sign_flip_pvalue, summarize_seeds, verdicts
from ..sweep.selection import normalisation
from .build import package_versions
from .data import RunData, anchor_points, hypervolume_analysis, load_run
from .definitions import front_definitions
from .explore import STYLE, forest_html, page_scripts, plotly_script
from .html import render_html
from .matched_kl import kl_per_token, matched_kl_difference, matched_kl_gains, soup_front
from .plots import forest_figure

DIRECTION = {"a better": 1, "b better": -1}


def metric_difference(data: RunData, a: str, b: str, metric: str) -> float:
    """Mean over the fronts' shared weights of metric(a) − metric(b) on one seed."""
    fronts = data.fronts()
    by_weight = {tuple(p["weights"]): p for p in fronts[b]}
    pairs = [(p, by_weight[tuple(p["weights"])]) for p in fronts[a] if tuple(p["weights"]) in by_weight]
    return float(np.mean([pa["objectives"][metric]["mean"] - pb["objectives"][metric]["mean"] for pa, pb in pairs]))


def study_settings(config: dict) -> dict:
    study = config.get("study") or {}
    boot = config.get("bootstrap") or {}
    return {"level": boot.get("level", 0.95), "alpha": study.get("alpha", 0.05),
            "margin": study.get("equivalence_margin", 0.02), "power": study.get("power", 0.8),
            "family": study.get("family")}


def family_of(comparisons: list[tuple[str, str]], declared: list | None, source: Path) -> list[tuple[str, str]]:
    if declared is None:
        return list(comparisons)
    family = [tuple(pair) for pair in declared]
    unknown = [pair for pair in family if pair not in comparisons]
    if unknown:
        raise PipelineError(f"{source}: study.family names {list(unknown[0])}, which is not a comparison of this "
                            f"study; use one of {[list(c) for c in comparisons]}")
    return family


def _inferred(per_seed: dict, settings: dict, margin: float | None) -> dict:
    values = [v for v in per_seed.values() if math.isfinite(v)]
    if len(values) < 2:
        return {"n": len(values), "mean": math.nan, "low": math.nan, "high": math.nan, "sign_flip_p": math.nan,
                "tost_p": None, "mde": math.nan, "sd": math.nan}
    return summarize_seeds(values, settings["level"], margin, settings["alpha"], settings["power"])


def build_study_report(study_dir: Path, seed_dirs: dict[int, Path]) -> Path:
    """study/report.md, report.html, pooled.json and forest.png from the seeds' finished runs."""
    runs = {s: load_run(d) for s, d in seed_dirs.items()}
    first = runs[min(runs)]
    box = normalisation([p for data in runs.values() for p in anchor_points(data)], first.rewards)
    analyses = {s: hypervolume_analysis(data, box) for s, data in runs.items()}
    settings = study_settings(first.config)
    comparisons = first.comparisons()
    for seed, data in runs.items():
        if data.comparisons() != comparisons:
            raise PipelineError(f"{data.run_dir}: its fronts differ from seed {min(runs)}'s; a study pools seeds of "
                                "one config — re-run the seeds with the same config")
    family = family_of(comparisons, settings["family"], study_dir.parent / "config.yaml")
    gains = {s: matched_kl_gains(data, box[1], box[2]) for s, data in runs.items()}

    rows = []
    for a, b in comparisons:
        per_seed = {s: analyses[s]["diff"][(a, b)].estimate for s in runs}
        rows.append({"a": a, "b": b, "per_seed": per_seed, "in_family": (a, b) in family,
                     **_inferred(per_seed, settings, settings["margin"])})
    judged = iter(verdicts([r for r in rows if r["in_family"]], settings["alpha"]))
    pooled_hv = []
    for row in rows:
        row = next(judged) if row["in_family"] else {**row, "holm_p": None, "verdict": None}
        pooled_hv.append({**row, "estimate": row["mean"], "direction": DIRECTION.get(row["verdict"], 0)})

    matched = []
    if all(g is not None for g in gains.values()):
        for a, b in comparisons:
            per_seed, counts = {}, {}
            for s in runs:
                per_seed[s], counts[s] = matched_kl_difference(gains[s], a, b)
            matched.append({"a": a, "b": b, "per_seed": per_seed, "matched_points": counts,
                            **_inferred(per_seed, settings, None)})

    pooled_metrics = []
    for a, b in comparisons:
        for metric in first.metrics:
            per_seed = {s: metric_difference(runs[s], a, b, metric) for s in runs}
            row = _inferred(per_seed, settings, None)
            pooled_metrics.append({"a": a, "b": b, "metric": metric, "per_seed": per_seed, **row,
                                   "estimate": row["mean"], "direction": 0})

    per_token = {}
    for s, data in runs.items():
        for front, pair in kl_per_token(data).items():
            per_token.setdefault(front, []).append(pair)
    per_token = {f: tuple(np.nanmean(np.array(v), axis=0).tolist()) for f, v in per_token.items()}

    study_dir.mkdir(parents=True, exist_ok=True)
    write_text(study_dir / "pooled.json", json.dumps(
        {"seeds": list(runs), "level": settings["level"], "alpha": settings["alpha"], "margin": settings["margin"],
         "reference": box[0].tolist(), "scale": box[1].tolist(), "hypervolume": pooled_hv,
         "matched_kl": matched, "metrics": pooled_metrics, "kl_per_token": per_token}, indent=1, default=_json))
    forest_figure(pooled_hv, pooled_metrics, first.metrics, study_dir / "forest.png")
    md = render_study_markdown(first, runs, analyses, pooled_hv, matched, pooled_metrics, per_token, box, settings,
                               package_versions())
    write_text(study_dir / "report.md", md)
    forest = forest_html(pooled_hv, pooled_metrics, first.metrics, settings["level"])
    write_text(study_dir / "report.html", render_html(md, study_dir, blocks={"forest.png": forest},
                                                      head=f"<style>{STYLE}</style>{plotly_script()}",
                                                      tail=page_scripts(explorer=False)))
    return study_dir


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _p(p) -> str:
    return "—" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.4f}"


def _verdict_text(row: dict, margin: float) -> str:
    return {"a better": f"**{row['a']} better**", "b better": f"**{row['b']} better**",
            "equivalent": f"**equivalent within ±{margin:g}**",
            "not shown": "**not shown** (no difference shown, and no equivalence)"}.get(row["verdict"],
                                                                                     "estimate only (not in the family)")


def render_study_markdown(first: RunData, runs: dict[int, RunData], analyses: dict, pooled_hv: list[dict],
                          matched: list[dict], pooled_metrics: list[dict], per_token: dict, box, settings: dict,
                          versions: dict) -> str:
    seeds = list(runs)
    n = len(seeds)
    level, alpha, margin = settings["level"], settings["alpha"], settings["margin"]
    pct = int(round(level * 100))
    family = [r for r in pooled_hv if r["in_family"]]
    sds = [r["sd"] for r in family if math.isfinite(r["sd"])]
    out = [f"# LiNeS study: `{first.run_dir.parent.name}`, {n} seeds ({', '.join(map(str, seeds))})", "",
           "## Design", "",
           f"- Replicates: {n} seeds; each retrains θ0 (SFT) and the policies and redraws the samples. The seed is the "
           "unit: every number below pools one value per seed. Evaluation prompts are the same for every seed; "
           "within a seed, the prompt bootstrap of that seed's report is the interval of its estimate.",
           f"- Per comparison: the mean of the per-seed differences, its {pct}% t-interval (n − 1 = {n - 1} degrees "
           "of freedom), and the exact two-sided sign-flip (permutation) p-value over seeds "
           f"({2 ** n if n <= 16 else 'Monte Carlo'} sign vectors; the smallest p-value {n} seeds can give is "
           f"{smallest_sign_flip_pvalue(n):.4g}).",
           f"- Family: the {len(family)} comparison(s) below marked as the family (`study.family`), their sign-flip "
           f"p-values Holm-adjusted together at α = {alpha:g}. A difference is claimed only when the Holm-adjusted "
           f"p-value is below α; \"equivalent\" only when TOST (two one-sided t-tests at α) shows the difference "
           f"within ±{margin:g} (`study.equivalence_margin`, hypervolume units of the box); otherwise \"not shown\".",
           f"- Minimum detectable effect (two-sided t-test at α = {alpha:g}, power {settings['power']:g}, at the "
           f"observed seed-to-seed spread): "
           + (", ".join(f"{r['a']} − {r['b']}: {r['mde']:.4f}" for r in family) if family else "—")
           + (f" (seed-to-seed standard deviations {min(sds):.4f} … {max(sds):.4f})." if sds else "."),
           "- Hypervolume: every front of every seed in one box, fixed before the sweep by θ0 and the single "
           "policies only (per reward, the worst value among every seed's θ0 and policies is the reference point, "
           "their range the scale; reference "
           + ", ".join(f"{r} {v * s:.4g}" for r, v, s in zip(first.rewards, box[0], box[1]))
           + "). No front being compared moves it: dropping a variant leaves every other comparison unchanged.",
           "- β and λ are chosen on each seed's validation prompts: a difference compares procedures (LiNeS with its "
           "β tuned), not one β.", "",
           "## Fronts and controls", ""]
    out += [f"- `{name}`: {text}" for name, text in front_definitions(first).items()]
    out += ["", "## Verdicts (hypervolume difference, first front minus second)", ""]
    for row in pooled_hv:
        out.append(f"- {row['a']} − {row['b']}: {_verdict_text(row, margin)}; mean {row['mean']:+.4f}, {pct}% "
                   f"t-interval {row['low']:+.4f} … {row['high']:+.4f}, sign-flip p {_p(row['sign_flip_p'])}"
                   + (f", Holm-adjusted p {_p(row['holm_p'])}, TOST p {_p(row['tost_p'])}" if row["in_family"]
                      else ""))
    out += ["", "| comparison | family | " + " | ".join(f"seed {s}" for s in seeds)
            + f" | mean | {pct}% t low | t high | sign-flip p | Holm p | TOST p | MDE | verdict |",
            "|---|---|" + "---|" * (n + 8)]
    for row in pooled_hv:
        out.append(f"| {row['a']} − {row['b']} | {'yes' if row['in_family'] else 'no'} | "
                   + " | ".join(f"{row['per_seed'][s]:+.4f}" for s in seeds)
                   + f" | {row['mean']:+.4f} | {row['low']:+.4f} | {row['high']:+.4f} | {_p(row['sign_flip_p'])} | "
                     f"{_p(row['holm_p'])} | {_p(row['tost_p'])} | {row['mde']:.4f} | {row['verdict'] or '—'} |")
    out += ["", "![pooled differences](forest.png)", ""]
    out += ["## Reward at matched KL(π‖π0)", ""]
    if matched:
        soup = soup_front(first)
        out += [f"A readout with no reference point: at each point of `{soup}`, each front's rewards where its KL "
                f"equals `{soup}`'s there (interpolated along the front's weights), weighted by the point's weights "
                "(rewards scaled by the anchors' range, every reward oriented so that higher is better); the "
                "difference of two fronts is averaged over the soup points both reach. Positive: the first front "
                "gets more reward for the same KL. Estimates over seeds, not part of the family.", "",
                "| comparison | " + " | ".join(f"seed {s}" for s in seeds)
                + f" | mean | {pct}% t low | t high | sign-flip p | matched points per seed |",
                "|---|" + "---|" * (n + 5)]
        for row in matched:
            out.append(f"| {row['a']} − {row['b']} | "
                       + " | ".join(f"{row['per_seed'][s]:+.4f}" for s in seeds)
                       + f" | {row['mean']:+.4f} | {row['low']:+.4f} | {row['high']:+.4f} | "
                         f"{_p(row['sign_flip_p'])} | {', '.join(str(row['matched_points'][s]) for s in seeds)} |")
    else:
        out.append("Not defined for this study (it needs a KL metric, a plain linear soup and two rewards).")
    if per_token:
        out += ["", "KL(π‖π0) per response and per response token (mean over each front's points and the seeds; "
                "length is one of the rewards, so per response alone favours short fronts):", "",
                "| front | KL per response (nats) | KL per token (nats) |", "|---|---|---|"]
        out += [f"| {f} | {a:.4g} | {b:.4g} |" for f, (a, b) in per_token.items()]
    out += ["", "## Closeness to θ0 (estimates, not verdicts)", "",
            f"Each metric (lower is closer to θ0), mean over the fronts' shared weights of first minus second front, "
            f"per seed, then the mean over seeds with its {pct}% t-interval. Negative: the first front stayed closer.",
            "", "| comparison | metric | " + " | ".join(f"seed {s}" for s in seeds) + f" | mean | {pct}% t low | "
            "t high |", "|---|---|" + "---|" * (n + 3)]
    for row in pooled_metrics:
        out.append(f"| {row['a']} − {row['b']} | {row['metric']} | "
                   + " | ".join(f"{row['per_seed'][s]:+.4g}" for s in seeds)
                   + f" | {row['mean']:+.4g} | {row['low']:+.4g} | {row['high']:+.4g} |")
    out += ["", "## Each seed (estimates on that draw)", "",
            f"Hypervolume differences in the study's box with each seed's {pct}% prompt-bootstrap interval: what one "
            "draw shows, not a finding.", ""]
    for s in seeds:
        diffs = "; ".join(f"{a} − {b} {analyses[s]['diff'][(a, b)].estimate:+.4f} "
                          f"({analyses[s]['diff'][(a, b)].low:+.4f} … {analyses[s]['diff'][(a, b)].high:+.4f})"
                          for a, b in runs[s].comparisons())
        selection = runs[s].plan.get("selection") or {}
        chosen = ", ".join(f"{v}: `{sel['chosen']}`" for v, sel in selection.items())
        out.append(f"- **seed {s}** ([report]({Path('..') / runs[s].run_dir.name / 'report' / 'report.html'})): "
                   f"{diffs}. Chosen on validation prompts: {chosen or 'nothing to choose'}.")
    out += ["", "## Package versions", ""] + [f"- {k}: {v}" for k, v in versions.items()]
    return "\n".join(out) + "\n"
