"""Load what a report needs from a run directory (nothing is recomputed) and derive its numbers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lines.user_files import read_yaml_mapping

from ..errors import PipelineError
from ..pareto import Interval, bootstrap_hypervolumes, count_dominated, orient, pareto_front
from ..summary import LEVEL, compare, direction
from ..sweep.cache import Damaged, parse_point, parse_samples, read_json_text
from ..sweep.selection import normalisation, reward_matrix
from ..sweep.variants import BASE, FORGETTING, MATCHED, NOT_FRONTS, POLICY, REFERENCE, UNIFORM, matched_front


@dataclass
class RunData:
    run_dir: Path
    config: dict
    plan: dict
    points: list[dict]  # evaluation results, with per-prompt means
    diagnostics: dict | None

    @property
    def rewards(self) -> list[str]:
        return self.plan["rewards"]

    @property
    def metrics(self) -> list[str]:
        return self.plan["metrics"]

    def fronts(self) -> dict[str, list[dict]]:
        """Front name -> its points, in weight order (the swept variants and their controls only). A variant has
        one front on the evaluation prompts (its chosen candidate); the norm-matched controls, one per LiNeS
        variant, are `matched[<variant>]`."""
        out: dict[str, list[dict]] = {}
        for p in self.points:
            if p["variant"] not in NOT_FRONTS:
                out.setdefault(p["front"] if p["variant"] == MATCHED else p["variant"], []).append(p)
        return out

    def comparisons(self) -> list[tuple[str, str]]:
        """(LiNeS front, the front it is compared with): the plain variant of the same merge method and parameters
        (LiNeS on TIES against TIES, on a linear soup against the soup), its norm-matched control, and the tuned
        uniform control (a scaled linear soup, so only for LiNeS on a linear soup)."""
        fronts = self.fronts()
        out = []
        for front, pts in fronts.items():
            if not _is_lines(pts):
                continue
            method = _method(pts)
            out += [(front, other) for other, others in fronts.items()
                    if not any(p["merge"].get("lines") for p in others) and _method(others) == method]
            out += [(front, matched_front(front))] if matched_front(front) in fronts else []
            if UNIFORM in fronts and _method(fronts[UNIFORM]) == method:
                out.append((front, UNIFORM))
        # A control that borrows another variant's β (lines.beta_from) against that variant: the one thing they
        # differ in (the head's scale, the depth order, the blocks left at α).
        for spec in (self.config.get("sweep") or {}).get("variants") or []:
            source = (spec.get("lines") or {}).get("beta_from")
            if source and spec["name"] in fronts and source in fronts:
                out.append((spec["name"], source))
        return out

    def references(self) -> dict[str, dict]:
        refs = {"θ0": next(p for p in self.points if p["variant"] == BASE)}
        for p in self.points:
            if p["variant"] == POLICY:
                refs[f"policy: {p['candidate']}"] = p
            elif p["variant"] == REFERENCE:
                refs[p["candidate"]] = p
        return refs


def _method(points: list[dict]) -> tuple[str, str]:
    """A front's merge method and parameters (fronts are compared within one method)."""
    merge = points[0]["merge"]
    return merge["method"], json.dumps(merge.get("parameters") or {}, sort_keys=True)


def _is_lines(points: list[dict]) -> bool:
    """A front with a depth profile (β ≠ 0): LiNeS, not a uniform scale."""
    return any((p["merge"].get("lines") or {}).get("beta", 0) != 0 for p in points)


def rerun_command(run_dir: Path) -> str:
    """The command that recomputes what is missing or damaged in a run: the main job on the run's own config."""
    return f"accelerate launch pipelines/merge_policies.py --config {run_dir / 'config.yaml'}"


def damaged(path: Path, why: str, run_dir: Path) -> PipelineError:
    return PipelineError(f"{path}: damaged ({why}); the main job recomputes it: {rerun_command(run_dir)}")


def read_record(path: Path, run_dir: Path, parse=lambda text, _: read_json_text(text), key: str | None = None):
    """A JSON record of the run, or the one line naming it and the command that recomputes it."""
    try:
        return parse(path.read_text(encoding="utf-8"), key)
    except (Damaged, UnicodeDecodeError) as exc:
        raise damaged(path, str(exc) if isinstance(exc, Damaged) else "not text", run_dir) from None


def load_run(run_dir: str | Path) -> RunData:
    run_dir = Path(run_dir)
    plan_path = run_dir / "sweep" / "plan.json"
    if not plan_path.exists():
        raise PipelineError(f"{run_dir}: no sweep/plan.json; run the sweep first "
                            f"(accelerate launch pipelines/merge_policies.py --config ...)")
    plan = read_record(plan_path, run_dir)
    if not isinstance(plan, dict) or any(f not in plan for f in ("rewards", "metrics", "evaluation_keys")):
        raise damaged(plan_path, "not a sweep plan", run_dir)
    points = []
    for key in plan["evaluation_keys"]:
        path = run_dir / "sweep" / "points" / f"{key}.json"
        if not path.exists():
            raise PipelineError(f"{path}: a point of the sweep is missing from the cache; re-run the sweep: "
                                f"{rerun_command(run_dir)}")
        points.append(read_record(path, run_dir, parse_point, key))
    config_path = run_dir / "config.yaml"
    config = read_yaml_mapping(config_path, PipelineError) if config_path.exists() else {}
    diag_path = run_dir / "sweep" / "diagnostics.json"
    diagnostics = read_record(diag_path, run_dir) if diag_path.exists() else None
    return RunData(run_dir, config, plan, points, diagnostics)


def load_samples(data: RunData, gen_key: str) -> list[dict] | None:
    """A point's cached generations (None if not there), or the one line naming the damaged file."""
    path = data.run_dir / "sweep" / "samples" / f"{gen_key}.jsonl"
    return read_record(path, data.run_dir, parse_samples, gen_key) if path.exists() else None


def shown_points(data: RunData) -> list[dict]:
    """The evaluation points a report shows: fronts, θ0, the policies and references."""
    return [p for p in data.points if p["variant"] not in FORGETTING]


def anchor_points(data: RunData) -> list[dict]:
    """The points hypervolume's reference point and scale come from: θ0 and the single policies, nothing else.

    The rule: per reward, the reference is the worst value among θ0 and the single policies, the scale the range
    between their worst and best. Why these: they exist before the sweep (its inputs, measured on the same
    evaluation prompts), every front runs between them, and none of them is a front being compared; so adding or
    dropping a variant or a control never moves another comparison's numbers (tests/test_reference_point.py), and a
    front that extrapolates past the policies gains no room from its own points. A study pools every seed's anchors
    into one box (each seed's θ0 and policies), the same for every front and every seed."""
    anchors = [p for p in data.points if p["variant"] in (BASE, POLICY)]
    if len(anchors) < 2:
        raise PipelineError(f"{data.run_dir}: the sweep has no θ0 and single-policy points to fix hypervolume's "
                            f"reference point; re-run the sweep: {rerun_command(data.run_dir)}")
    return anchors


def hypervolume_analysis(data: RunData, box: tuple | None = None) -> dict:
    """Every front's hypervolume with a paired bootstrap interval, differences, and dominance counts.

    Reference point and scale: fixed by θ0 and the single policies only (anchor_points: the worst value of each
    reward among them, and their range), so a hypervolume is in units of the anchors' box and no front moves
    another comparison. `box` (reference, scale, directions) replaces that box, e.g. one shared by the seeds of a
    study."""
    rewards = data.rewards
    reference, scale, dirs = box if box is not None else normalisation(anchor_points(data), rewards)
    fronts = data.fronts()
    per_prompt = {}
    for name, pts in fronts.items():
        arr = np.array([[p["objectives"][r]["per_prompt"] for r in rewards] for p in pts])  # (points, k, prompts)
        per_prompt[name] = orient(arr.transpose(0, 2, 1), dirs)  # (points, prompts, k)
    boot = data.config.get("bootstrap", {}) or {}
    intervals = bootstrap_hypervolumes(per_prompt, reference, scale, n_boot=boot.get("samples", 1000),
                                       seed=boot.get("seed", 0), level=boot.get("level", 0.95))
    dominance = {}
    oriented = {n: orient(reward_matrix(p, rewards), dirs) for n, p in fronts.items()}
    for a in fronts:
        for b in fronts:
            if a != b:
                front_a = oriented[a][pareto_front(oriented[a])]
                front_b = oriented[b][pareto_front(oriented[b])]
                dominance[(a, b)] = count_dominated(front_a, by=front_b)
    return {"reference": reference * scale, "scale": scale, "hv": intervals["hv"], "diff": intervals["diff"],
            "draws": intervals["draws"],
            "dominated": dominance, "level": boot.get("level", 0.95),
            "non_dominated": {n: pareto_front(o).tolist() for n, o in oriented.items()}}


def policy_tradeoff(data: RunData) -> list[dict]:
    """For each pair of single policies and each reward: the paired difference with its interval (the project's
    significance rule), and whether the policies differ significantly in opposite directions on the rewards."""
    pols = [p for p in data.points if p["variant"] == POLICY]
    level = (data.config.get("bootstrap") or {}).get("level", LEVEL)
    out = []
    for i in range(len(pols)):
        for j in range(i + 1, len(pols)):
            a, b = pols[i], pols[j]
            rows = [{"reward": r, **compare(a["objectives"][r], b["objectives"][r], level)} for r in data.rewards]
            signs = {np.sign(row["difference"]) for row in rows}
            out.append({"a": a["candidate"], "b": b["candidate"], "rows": rows, "level": level,
                        "opposite": len(signs) > 1 and all(row["significant"] for row in rows)})
    return out


def verdict(analysis: dict, a: str, b: str) -> str:
    d: Interval = analysis["diff"][(a, b)]
    level = int(round(analysis["level"] * 100))
    ci = f"{d.estimate:+.4f} ({level}% CI {d.low:+.4f} … {d.high:+.4f})"
    sign = direction(d.low, d.high)
    if sign > 0:
        return f"**{a} beat {b}**: hypervolume difference {ci} on this draw; its interval excludes zero."
    if sign < 0:
        return f"**{a} lost to {b}**: hypervolume difference {ci} on this draw; its interval excludes zero."
    return f"**no clear difference between {a} and {b}**: hypervolume difference {ci} on this draw includes zero."
