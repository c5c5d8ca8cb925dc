"""The sweep end to end on tiny local checkpoints: caching, resume, what a change recomputes, multi-process."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import sweep_fixtures as sf
import tiny
from pipelines.merge_policies import main
from pipelines.config.load import load_run_config
from pipelines.sweep.plan import evaluation_points, validation_points

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root, sf.build_sweep_inputs(root / "inputs")


def mtimes(directory: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_plan_counts(inputs, tmp_path):
    root, paths = inputs
    cfg = load_run_config(sf.sweep_config(tmp_path, paths))
    val = validation_points(cfg)
    # lines has 2 β candidates and the uniform control 2 λ candidates, 3 weights each.
    assert len(val) == (2 + 2) * 3
    ev = evaluation_points(cfg, {"lines": "beta=1", "uniform": "lambda=1.5"})
    fronts = {p.front for p in ev}
    assert {"soup", "lines[beta=1]", "uniform[lambda=1.5]", "base"} <= fronts
    assert sum(p.variant == "policy" for p in ev) == 2
    assert sum(p.variant.startswith("forget_") for p in ev) == 2 * 2 * 2  # policies × γ × {lines, uniform}
    uniform = next(p for p in ev if p.variant == "uniform")
    assert uniform.merge["lines"] == {"alpha": 1.5, "beta": 0.0}


@pytest.mark.slow  # three sweeps end to end
def test_sweep_caches_resumes_and_recomputes_only_what_changed(inputs, tmp_path):
    root, paths = inputs
    config = sf.sweep_config(tmp_path, paths)
    assert main(["--config", str(config), "--quiet"]) == 0
    run = tmp_path / "runs" / "tiny"
    samples, scores = run / "sweep" / "samples", run / "sweep" / "scores"
    first_points = (run / "sweep" / "points.jsonl").read_text()
    before_samples, before_scores = mtimes(samples), mtimes(scores)

    # A re-run computes nothing (the layer diagnostics included).
    diagnostics = (run / "sweep" / "diagnostics.json").stat().st_mtime_ns
    assert main(["--config", str(config), "--quiet"]) == 0
    assert mtimes(samples) == before_samples and mtimes(scores) == before_scores
    assert (run / "sweep" / "diagnostics.json").stat().st_mtime_ns == diagnostics
    assert (run / "sweep" / "points.jsonl").read_text() == first_points

    # A run killed half-way: some generations and scores are missing. Only those are recomputed, identically.
    victim = sorted(before_samples)[3]
    victim_text = (samples / victim).read_text()
    (samples / victim).unlink()
    shutil.rmtree(run / "sweep" / "points")
    for name in list(before_scores)[:2]:
        (scores / name).unlink()
    assert main(["--config", str(config), "--quiet"]) == 0
    after = mtimes(samples)
    assert (samples / victim).read_text() == victim_text
    assert {k: v for k, v in after.items() if k != victim} == {k: v for k, v in before_samples.items() if k != victim}
    assert (run / "sweep" / "points.jsonl").read_text() == first_points

    # A changed reward rescored everything for that reward, but regenerates nothing.
    data = yaml.safe_load(config.read_text())
    data["rewards"][1] = {"name": "long", "type": "length", "min_words": 3}
    config.write_text(yaml.safe_dump(data))
    before_scores = mtimes(scores)
    assert main(["--config", str(config), "--quiet"]) == 0
    assert mtimes(samples) == after
    new_scores = set(mtimes(scores)) - set(before_scores)
    assert len(new_scores) == len(after)  # one new score file per generation set (only `long` changed)


@pytest.mark.slow  # a sweep and its report end to end
def test_report_numbers_equal_points_csv(inputs, tmp_path):
    root, paths = inputs
    assert main(["--config", str(sf.sweep_config(tmp_path, paths)), "--quiet"]) == 0
    report = tmp_path / "runs" / "tiny" / "report"
    for name in ["report.md", "report.html", "points.csv", "pareto.png", "pareto.svg", "diagnostics.png",
                 "forgetting.png"]:
        assert (report / name).stat().st_size > 0, name
    assert (report / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(report / "points.csv") as f:
        csv_rows = list(csv.reader(f))
    md = (report / "report.md").read_text()
    table = md.split("## All points (same numbers as points.csv)")[1].strip().splitlines()
    md_rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table
               if line.startswith("|") and not set(line) <= set("|-")]
    assert md_rows == csv_rows and len(csv_rows) > 10
    points = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "sweep" / "points.jsonl").open()]
    header = csv_rows[0]
    rows = [dict(zip(header, r)) for r in csv_rows[1:]]
    means = {(r["front"], r["w_positive"], r["w_long"]): float(r["positive_mean"]) for r in rows}
    for p in points:
        key = (p["front"], f"{p['weights'][0]:.6g}", f"{p['weights'][1]:.6g}")
        assert means[key] == pytest.approx(p["objectives"]["positive"]["mean"], rel=1e-5, abs=1e-9)
    # The α and λ(ℓ) applied are in the table: a linear soup's α is 1 at every weight, its blocks α + β·ℓ/(L−1).
    lines_rows = [r for r in rows if r["variant"] == "lines"]
    assert lines_rows and all(r["alpha"] == "1" for r in lines_rows)
    beta = float(next(p for p in points if p["variant"] == "lines")["lines"]["beta"])
    assert [float(x) for x in lines_rows[0]["lambda_blocks"].split("/")] == pytest.approx(
        [1 + beta * layer / 2 for layer in range(3)])
    matched = [r for r in rows if r["front"] == "matched[lines]"]
    assert len(matched) == len(lines_rows) and len({r["alpha"] for r in matched}) > 1  # one λ per weight
    check_verdicts(md, {"soup", "uniform", "matched[lines]"})
    html = (report / "report.html").read_text()
    assert "data:image/png;base64," in html and "<table>" in html
    # `lines report` regenerates from the cache alone.
    (report / "report.md").unlink()
    from lines.cli import main as lines_main

    assert lines_main(["report", str(tmp_path / "runs" / "tiny")]) == 0
    assert (report / "report.md").read_text() == md


VERDICT = re.compile(r"^- \*\*(?:(?P<a>\S+) (?P<word>beat|lost to) (?P<b>\S+)|no clear difference between (?P<a0>\S+) "
                     r"and (?P<b0>\S+))\*\*: hypervolume difference (?P<est>[-+]\d\.\d{4}) \(95% CI "
                     r"(?P<low>[-+]\d\.\d{4}) … (?P<high>[-+]\d\.\d{4})\)")


def check_verdicts(md: str, others: set[str]) -> None:
    """Each verdict line names lines against one other front, its word is the one the printed interval gives
    (above zero: beat; below: lost to; else no clear difference), and its estimate is the difference of the two
    fronts' hypervolumes in the table below it."""
    section = md.split("## Verdict")[1].split("## ")[0]
    hv_table = section.split("| front | hypervolume")[1].split("\n\n")[0].splitlines()[2:]
    table = {row[0]: float(row[1]) for row in ([c.strip() for c in line.strip("|").split("|")] for line in hv_table)}
    seen = set()
    for line in (line for line in section.splitlines() if line.startswith("- **")):
        match = VERDICT.match(line)
        assert match, line
        a, b = match["a"] or match["a0"], match["b"] or match["b0"]
        low, high, estimate = float(match["low"]), float(match["high"]), float(match["est"])
        expected = "beat" if low > 0 else "lost to" if high < 0 else None
        assert match["word"] == expected, line
        assert a == "lines" and low <= estimate <= high
        assert estimate == pytest.approx(table[a] - table[b], abs=2e-4)  # both printed to 4 decimals
        seen.add(b)
    assert seen == others


def test_verdict_check_rejects_words_that_contradict_their_interval():
    """The check above, on verdicts written by hand: it accepts only the word the interval gives."""
    table = "\n| front | hypervolume |\n|---|---|\n| lines | 0.5000 |\n| soup | 0.4000 |\n"
    right = "## Verdict\n\n- **lines beat soup**: hypervolume difference +0.1000 (95% CI +0.0500 … +0.1500) x\n"
    check_verdicts(right + table, {"soup"})
    for wrong in ["- **lines lost to soup**: hypervolume difference +0.1000 (95% CI +0.0500 … +0.1500) x",
                  "- **no clear difference between lines and soup**: hypervolume difference +0.1000 (95% CI +0.0500 "
                  "… +0.1500) x",
                  "- **lines beat soup**: hypervolume difference +0.1000 (95% CI -0.0500 … +0.1500) x",
                  "- **lines beat soup**: hypervolume difference +0.2000 (95% CI +0.0500 … +0.2500) x"]:
        with pytest.raises(AssertionError):
            check_verdicts("## Verdict\n\n" + wrong + "\n" + table, {"soup"})


@pytest.mark.slow
def test_two_processes_give_the_one_process_results(inputs, tmp_path):
    root, paths = inputs
    one = sf.sweep_config(tmp_path / "one", paths)
    assert main(["--config", str(one), "--quiet"]) == 0
    two = sf.sweep_config(tmp_path / "two", paths)
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           str(ROOT / "pipelines" / "merge_policies.py"), "--config", str(two), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):  # both ranks served points
        assert re.search(rf"evaluation sweep: rank {rank} evaluates [1-9]\d* of \d+ points", proc.stderr)
    rows = lambda d: [json.loads(line) for line in (d / "runs" / "tiny" / "sweep" / "points.jsonl").open()]
    one_rows, two_rows = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert [r["front"] for r in two_rows] == [r["front"] for r in one_rows]
    for a, b in zip(one_rows, two_rows):
        assert a["weights"] == b["weights"] and a["objectives"].keys() == b["objectives"].keys()
        for name in a["objectives"]:
            # Generations are identical; KL's forward passes may round differently with another thread count.
            assert b["objectives"][name]["mean"] == pytest.approx(a["objectives"][name]["mean"], rel=1e-5, abs=1e-6)
    samples = lambda d: {p.name: p.read_text() for p in (d / "runs" / "tiny" / "sweep" / "samples").iterdir()}
    assert samples(tmp_path / "two") == samples(tmp_path / "one")


@pytest.mark.slow  # three sweeps end to end
def test_scores_follow_the_content_of_the_files_they_read(inputs, tmp_path):
    """Perplexity texts and a z-score reference rewritten in place (same paths): exactly the scores that read
    them are recomputed, nothing is regenerated."""
    root, paths = inputs
    texts, reference = tmp_path / "texts.jsonl", tmp_path / "reference.jsonl"
    shutil.copy(paths["held_out"], texts)
    reference.write_text(json.dumps({"prompt": "p", "response": "short"}) + "\n"
                         + json.dumps({"prompt": "p", "response": "a much longer response"}) + "\n")
    config = sf.sweep_config(tmp_path, paths, metrics=[
        {"name": "perplexity", "type": "perplexity", "texts": str(texts)}])
    data = yaml.safe_load(config.read_text())
    data["rewards"][1]["normalize"] = {"method": "zscore", "reference": str(reference)}
    data["sweep"]["variants"] = data["sweep"]["variants"][:1]
    data["forgetting"] = None
    config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(config), "--quiet"]) == 0
    sweep = tmp_path / "runs" / "tiny" / "sweep"
    samples, before = mtimes(sweep / "samples"), mtimes(sweep / "scores")
    points = lambda: {r["front"] + str(r["weights"]): r["objectives"] for r in  # noqa: E731
                      map(json.loads, (sweep / "points.jsonl").open())}
    first = points()

    texts.write_text(json.dumps({"text": "we waited an hour and the soup was cold"}) + "\n")
    assert main(["--config", str(config), "--quiet"]) == 0
    assert mtimes(sweep / "samples") == samples
    new = set(mtimes(sweep / "scores")) - set(before)
    assert len(new) == len(samples)  # one new perplexity score per generation set
    second = points()
    assert all(second[k]["perplexity"]["mean"] != first[k]["perplexity"]["mean"] for k in first)
    assert all(second[k]["long"]["mean"] == first[k]["long"]["mean"] for k in first)

    reference.write_text(json.dumps({"prompt": "p", "response": "x" * 40}) + "\n"
                         + json.dumps({"prompt": "p", "response": "y" * 80}) + "\n")
    before = mtimes(sweep / "scores")
    assert main(["--config", str(config), "--quiet"]) == 0
    assert mtimes(sweep / "samples") == samples
    assert len(set(mtimes(sweep / "scores")) - set(before)) == len(samples)  # the z-scored reward only
    third = points()
    assert all(third[k]["long"]["mean"] != second[k]["long"]["mean"] for k in first)
    assert all(third[k]["positive"] == second[k]["positive"] for k in first)


def test_reference_policies_are_rows_with_their_reward_weights_in_the_right_columns(inputs, tmp_path):
    from pipelines.prompts import prompt_split
    from pipelines.report import build_report
    from pipelines.sweep.plan import ReferencePolicy
    from pipelines.sweep.runner import run_sweep

    root, paths = inputs
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(tiny.perturbed_copy(base, seed=9, scale=0.3), tmp_path / "morl")
    config = sf.sweep_config(tmp_path, paths, forgetting=None)
    data = yaml.safe_load(config.read_text())
    data["sweep"]["variants"] = data["sweep"]["variants"][:1]
    config.write_text(yaml.safe_dump(data))
    cfg = load_run_config(config)
    references = [ReferencePolicy("morl", str(tmp_path / "morl"), {"long": 0.25, "positive": 0.75}),
                  ReferencePolicy("given", str(paths["policies"][0]), None)]
    run_sweep(cfg, str(paths["base"]), [str(p) for p in paths["policies"]], prompt_split(cfg.prompts),
              progress=False, references=references)
    report = build_report(cfg.run_dir)
    with open(report / "points.csv") as f:
        header, *rows = list(csv.reader(f))
    assert all(len(row) == len(header) for row in rows)
    by_front = {row[0]: dict(zip(header, row)) for row in rows}
    morl, given = by_front["reference[morl]"], by_front["reference[given]"]
    assert (morl["w_positive"], morl["w_long"]) == ("0.75", "0.25")
    assert (given["w_positive"], given["w_long"]) == ("", "")
    jsonl = {p["front"]: p for p in map(json.loads, (cfg.run_dir / "sweep" / "points.jsonl").open())}
    for front, row in (("reference[morl]", morl), ("reference[given]", given)):
        for name in ("positive", "long", "kl", "perplexity"):
            assert float(row[f"{name}_mean"]) == pytest.approx(jsonl[front]["objectives"][name]["mean"], rel=1e-5)
    # The reference given as policy 0 is that policy: the same generations as the policy's own point.
    assert given["positive_mean"] == by_front["policy[positive]"]["positive_mean"]
    md = (report / "report.md").read_text()
    assert "| reference[morl] | reference | morl | 0.75 | 0.25 |" in md


@pytest.mark.slow  # a sweep per seed end to end
def test_a_replicated_study_pools_every_seed(inputs, tmp_path):
    """Given checkpoints, seeds redraw the sweep's samples; the study report pools them and keeps each seed's."""
    root, paths = inputs
    config = sf.sweep_config(tmp_path, paths, forgetting=None)
    data = yaml.safe_load(config.read_text())
    # VADER scores the tiny models' random text 0 everywhere (a flat front, every hypervolume 0): a reward that varies.
    data["rewards"][0] = {"name": "positive", "type": "diversity"}
    config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(config), "--quiet", "--seeds", "0,1"]) == 0
    run = tmp_path / "runs" / "tiny"
    pooled = json.loads((run / "study" / "pooled.json").read_text())
    assert pooled["seeds"] == [0, 1]
    samples = lambda s: {p.read_text() for p in (run / f"seed-{s}" / "sweep" / "samples").iterdir()}  # noqa: E731
    assert samples(0) != samples(1)  # another seed, other samples
    from pipelines.report.data import anchor_points, hypervolume_analysis, load_run
    from pipelines.sweep.selection import normalisation

    comparisons = {(r["a"], r["b"]) for r in pooled["hypervolume"]}
    assert comparisons == {("lines", "soup"), ("lines", "matched[lines]"), ("lines", "uniform")}
    runs = [load_run(run / f"seed-{s}") for s in (0, 1)]
    box = normalisation([p for data in runs for p in anchor_points(data)], runs[0].rewards)  # one box, both seeds
    for row in pooled["hypervolume"]:
        per_seed = [hypervolume_analysis(data, box)["diff"][(row["a"], row["b"])].estimate for data in runs]
        assert [row["per_seed"][str(s)] for s in (0, 1)] == pytest.approx(per_seed)
        assert row["estimate"] == pytest.approx(np.mean(per_seed))
        assert row["low"] <= row["high"] and row["sign_flip_p"] in (0.5, 1.0)  # two seeds: 4 sign vectors
    assert any(row["low"] < row["high"] for row in pooled["hypervolume"])
    assert {r["metric"] for r in pooled["metrics"]} == {"kl", "perplexity"}
    md = (run / "study" / "report.md").read_text()
    assert "## Verdicts" in md and "**seed 1**" in md and (run / "study" / "forest.png").stat().st_size > 5000


@pytest.mark.slow  # a sweep end to end
def test_three_rewards_are_drawn_on_the_weight_simplex(inputs, tmp_path):
    root, paths = inputs
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(tiny.perturbed_copy(base, seed=7, scale=0.3), tmp_path / "short")
    tiny.tiny_tokenizer(tmp_path / "short")
    config = sf.sweep_config(tmp_path, paths, forgetting=None)
    data = yaml.safe_load(config.read_text())
    data["rewards"].append({"name": "short", "type": "conciseness"})
    data["policies"]["short"] = str(tmp_path / "short")
    data["sweep"].update(points=None, step=0.5)
    data["metrics"] = data["metrics"][:1]
    config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(config), "--quiet"]) == 0
    report = tmp_path / "runs" / "tiny" / "report"
    assert (report / "pareto.png").stat().st_size > 20_000
    svg = (report / "pareto.svg").read_text()
    assert "w_short = 1" in svg and "lines − soup" in svg  # a ternary map per quantity and the difference map
    page = (report / "report.html").read_text()  # the simplex maps stay in the page, above the interactive fronts
    assert page.index("<img src='data:image/png;base64,") < page.index("fronts-overview")

    from pipelines.report.plots import _ternary

    assert _ternary((1, 0, 0)) == (0, 0) and _ternary((0, 1, 0)) == (1, 0)
    assert _ternary((0, 0, 1)) == pytest.approx((0.5, 3 ** 0.5 / 2))
    assert _ternary((1 / 3, 1 / 3, 1 / 3)) == pytest.approx((0.5, 3 ** 0.5 / 6))  # the centroid
