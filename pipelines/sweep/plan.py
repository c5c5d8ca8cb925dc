"""Which points a sweep evaluates: every variant's front, its controls, θ0 and the single policies, the reference
policies and the forgetting study."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lines.recipe import MergeSpec

from ..prompts import EVALUATION, VALIDATION
from .variants import BASE, FORGET_LINES, FORGET_MATCHED, FORGET_UNIFORM, MATCHED, POLICY, REFERENCE, UNIFORM
from .weights import one_hot, simplex_grid

if TYPE_CHECKING:
    from ..config.run import RunConfig


@dataclass(frozen=True)
class Point:
    variant: str  # a configured variant's name or one of the kinds in variants.py
    candidate: str  # "" or e.g. "beta=0.5" / "lambda=1.25" / "gamma=0.5"
    split: str
    weights: tuple[float, ...]
    merge: dict = field(hash=False, compare=False)  # MergeSpec fields

    def merge_spec(self) -> MergeSpec:
        return MergeSpec(**self.merge)

    @property
    def front(self) -> str:
        """The front this point belongs to: variant plus candidate."""
        return f"{self.variant}[{self.candidate}]" if self.candidate else self.variant

    def describe(self) -> dict:
        return {"variant": self.variant, "candidate": self.candidate, "split": self.split,
                "weights": list(self.weights), "merge": self.merge, "front": self.front}


def weight_grid(cfg: RunConfig) -> list[tuple[float, ...]]:
    n = len(cfg.rewards)
    if cfg.sweep.weights is not None:
        grid = [tuple(float(x) for x in w) for w in cfg.sweep.weights]
        for index, w in enumerate(grid):
            if len(w) != n or min(w) < 0 or abs(sum(w) - 1) > 1e-6:
                raise ValueError(f"sweep.weights[{index}] {list(w)} must have {n} non-negative values (one per "
                                 "reward) summing to 1; fix that entry")
        refs = [one_hot(n, i) for i in range(n)]
        return grid + [r for r in refs if r not in grid]
    return simplex_grid(n, points=cfg.sweep.points if cfg.sweep.step is None else None, step=cfg.sweep.step)


def candidates(cfg: RunConfig) -> dict[str, list[tuple[str, dict | None]]]:
    """variant -> [(candidate label, lines config)]; variants with one candidate need no selection."""
    out: dict[str, list[tuple[str, dict | None]]] = {}
    for v in cfg.sweep.variants:
        if v.lines is None:
            out[v.name] = [("", None)]
            continue
        if v.lines.beta_from is not None:  # β known once its source variant's is chosen (evaluation_points)
            out[v.name] = [("", None)]
            continue
        betas = v.lines.betas()
        out[v.name] = [(f"beta={b:g}" if len(betas) > 1 else "", lines_of(v, b)) for b in betas]
    lambdas = uniform_lambdas(cfg)
    if lambdas:
        out[UNIFORM] = [(f"lambda={lam:g}" if len(lambdas) > 1 else "", {"alpha": lam, "beta": 0.0})
                        for lam in lambdas]
    return out


def lines_of(v, beta: float) -> dict:
    """The LiNeS config of a variant's point at β (the controls' fields only when set: merge keys stay as they
    were for every other variant)."""
    lines = {"alpha": v.lines.alpha, "beta": beta, "head_depth": v.lines.head_depth, "profile": v.lines.profile}
    if v.lines.reverse:
        lines["reverse"] = True
    if v.lines.scope != "depth":
        lines["scope"] = v.lines.scope
    return lines


def borrowed_beta(cfg: RunConfig, source: str, chosen: dict[str, str]) -> tuple[str, float]:
    """(label, β) of the candidate chosen for `source` (its only β when it has one)."""
    label, lines = next(c for c in candidates(cfg)[source] if c[0] == chosen.get(source, candidates(cfg)[source][0][0]))
    return label, lines["beta"]


def uniform_lambdas(cfg: RunConfig) -> list[float]:
    """The tuned control's λ grid: as configured, or α + β/2 for every LiNeS candidate's β (the mean block scale of
    the increasing profile, with α = 1, its value for a linear soup — the control scales a linear soup), so both get
    the same grid budget. A config whose LiNeS is on another method should give lambda_grid itself."""
    if not cfg.sweep.uniform_control.tuned:
        return []
    if cfg.sweep.uniform_control.lambda_grid is not None:
        return list(cfg.sweep.uniform_control.lambda_grid)
    means = []
    for v in cfg.sweep.variants:
        if v.lines is not None:
            alpha = 1.0 if v.lines.alpha == "auto" else v.lines.alpha
            means += [round(alpha + b / 2, 6) for b in v.lines.betas()]
    return sorted(set(means)) or [1.0]


def variant_method(cfg: RunConfig, variant: str) -> tuple[str, dict]:
    if variant == UNIFORM:
        return "linear", {}
    v = next(v for v in cfg.sweep.variants if v.name == variant)
    return v.method, v.parameters


def front_points(cfg: RunConfig, variant: str, candidate: str, lines: dict | None, split: str,
                 grid: list[tuple[float, ...]] | None = None) -> list[Point]:
    method, params = variant_method(cfg, variant)
    points = []
    for w in grid if grid is not None else weight_grid(cfg):
        points.append(Point(variant, candidate, split, w,
                            {"method": method, "weights": list(w), "parameters": params, "lines": lines}))
    return points


def validation_points(cfg: RunConfig) -> list[Point]:
    """Every candidate of every variant that has several, on the validation prompts (and the validation grid)."""
    grid = validation_grid(cfg)
    return [p for variant, cands in candidates(cfg).items() if len(cands) > 1
            for label, lines in cands for p in front_points(cfg, variant, label, lines, VALIDATION, grid)]


def validation_grid(cfg: RunConfig) -> list[tuple[float, ...]]:
    """The weights candidates are chosen on: the evaluation grid, or a coarser one (`sweep.validation_points` /
    `validation_step`) — choosing β needs the shape of a front, not its every point."""
    sweep = cfg.sweep
    if sweep.validation_points is None and sweep.validation_step is None:
        return weight_grid(cfg)
    return simplex_grid(len(cfg.rewards), points=sweep.validation_points, step=sweep.validation_step)


def matched_points(points: list[Point], lambdas: list[float]) -> list[Point]:
    """The norm-matched uniform control of LiNeS points: the same merge scaled by one λ, the one that gives the
    merged update the L1 norm of the LiNeS update at that point (`lambdas`, one per point). A front's control
    is `matched[<variant>]`; the forgetting study's is `forget_matched`."""
    out = []
    for point, lam in zip(points, lambdas):
        variant, candidate = (FORGET_MATCHED, point.candidate) if point.variant == FORGET_LINES \
            else (MATCHED, point.variant)
        out.append(Point(variant, candidate, point.split, point.weights,
                         {**point.merge, "lines": {"alpha": lam, "beta": 0.0}}))
    return out


def needs_matching(point: Point) -> bool:
    """LiNeS points with a depth profile (β ≠ 0) of a swept variant or of the forgetting study."""
    lines = point.merge.get("lines")
    return bool(lines) and lines.get("beta", 0) != 0 and point.variant not in (UNIFORM, MATCHED, FORGET_UNIFORM)


def evaluation_points(cfg: RunConfig, chosen: dict[str, str]) -> list[Point]:
    """The chosen candidate of every variant, the references and the forgetting study, on evaluation prompts."""
    n = len(cfg.rewards)
    points = []
    specs = {v.name: v for v in cfg.sweep.variants}
    for variant, cands in candidates(cfg).items():
        label, lines = next(c for c in cands if c[0] == chosen.get(variant, cands[0][0]))
        spec = specs.get(variant)
        if spec is not None and spec.lines is not None and spec.lines.beta_from is not None:
            label, beta = borrowed_beta(cfg, spec.lines.beta_from, chosen)
            label, lines = (f"{spec.lines.beta_from}:{label}" if label else ""), lines_of(spec, beta)
        points += front_points(cfg, variant, label, lines, EVALUATION)
    zero = tuple(0.0 for _ in range(n))
    points.append(Point(BASE, "", EVALUATION, zero,
                        {"method": "task_arithmetic", "weights": list(zero), "parameters": {}, "lines": None}))
    for i in range(n):
        w = one_hot(n, i)
        points.append(Point(POLICY, cfg.reward_names[i], EVALUATION, w,
                            {"method": "task_arithmetic", "weights": list(w), "parameters": {}, "lines": None}))
    if cfg.forgetting is not None:
        for i in range(n):
            w = one_hot(n, i)
            for gamma in cfg.forgetting.gamma_grid:
                for variant, lines in [(FORGET_LINES, {"alpha": gamma, "beta": 1.0 - gamma}),
                                       (FORGET_UNIFORM, {"alpha": gamma, "beta": 0.0})]:
                    points.append(Point(variant, f"{cfg.reward_names[i]}:gamma={gamma:g}", EVALUATION, w,
                                        {"method": "task_arithmetic", "weights": list(w), "parameters": {},
                                         "lines": lines}))
    return points


@dataclass(frozen=True)
class ReferencePolicy:
    """A policy shown beside the fronts but not merged (e.g. the MORL baseline), evaluated as it is.
    `reward_weights`: the mixture of rewards it was trained on, when it has one (its row's weight columns)."""

    name: str
    path: str
    reward_weights: dict[str, float] | None = None


def reference_point(reference: ReferencePolicy, rewards: list[str]) -> Point:
    """θ0 + the reference's own task vector. Its `weights` are the reward mixture it was trained on (aligned with
    the rewards, so its row's weight columns mean what they mean for the soups), or empty when it has none."""
    weights = tuple(float(reference.reward_weights.get(r, 0.0)) for r in rewards) if reference.reward_weights else ()
    return Point(REFERENCE, reference.name, EVALUATION, weights,
                 {"method": "task_arithmetic", "weights": [1.0], "parameters": {}, "lines": None})
