"""Evaluate sweep points into the cache, computing only what is missing.

For each point: its keys (cache.py), its route (routing.py), its samples (generate.py, one generation per
distinct merge however it was asked for), its scores and summary (score.py). Results come back in the order
asked, from the cache when they are there.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from lines import MergeInputs
from reward_models import fit_normalizers

from ..generation.protocol import GenerationBackend
from .cache import SweepCache, generation_key, point_key, score_key
from ..stage_times import timed
from .generate import PointGenerator
from .objectives import Objective
from .plan import Point
from .profiles import ProfileCache
from .routing import ADAPTER, Router
from .score import PointScorer, PolicyModels, mean_response_tokens


class PointEvaluator:
    """One set of inputs (θ0 and the policies) served by one backend; evaluates points into the cache."""

    def __init__(self, backend: GenerationBackend, inputs: MergeInputs, base: str, policies: list[str],
                 objectives: list[Objective], cache: SweepCache, models_fingerprint: dict, generation_settings: dict,
                 policy_copy_factory: Callable[[], object], adapter_dir: Path | None = None,
                 lora_route: str = "auto"):
        self.objectives, self.cache = objectives, cache
        self.generation_settings = generation_settings
        self.router = Router(backend.capabilities, inputs, lora_route)
        if self.router.adapters and adapter_dir is None:
            raise ValueError("serving LoRA soups needs adapter_dir")
        self.generator = PointGenerator(backend, inputs, base, policies, models_fingerprint, cache, adapter_dir)
        self.profiles = ProfileCache(inputs, models_fingerprint, cache.dir / "profiles")
        self._resolved: dict[str, tuple[dict, dict | None]] = {}
        self.scorer = PointScorer(objectives, cache, PolicyModels(backend, self.generator, inputs, policy_copy_factory))

    # -- LiNeS as applied --------------------------------------------------------------------------------
    def resolved(self, point: Point) -> tuple[Point, dict | None]:
        """The point with `alpha: auto` replaced by its value at the point's weights, and the schedule applied."""
        memo = json.dumps(point.merge, sort_keys=True)
        if memo not in self._resolved:  # per merge, not per point: several points may share one merge
            spec, applied = self.profiles.resolve(point.merge_spec())
            self._resolved[memo] = ({**point.merge, "lines": spec.lines.model_dump() if spec.lines else None}, applied)
        merge, applied = self._resolved[memo]
        return replace(point, merge=merge), applied

    # -- keys ----------------------------------------------------------------------------------------------
    def gen_key(self, point: Point, prompts) -> str:
        spec = self.resolved(point)[0].merge_spec()
        return generation_key(self.generator.request(spec).key, prompts, self.generation_settings)

    def score_keys(self, gen_key: str) -> dict[str, str]:
        return {o.name: score_key(gen_key, o.identity) for o in self.objectives}

    # -- points --------------------------------------------------------------------------------------------
    def evaluate(self, point: Point, prompts) -> dict:
        return self.evaluate_many([point], prompts)[0]

    def evaluate_many(self, points: list[Point], prompts) -> list[dict]:
        """Evaluate several points; those needing generation share calls where the route allows it."""
        resolved = [self.resolved(p) for p in points]
        points, applied = [p for p, _ in resolved], [a for _, a in resolved]
        gen_keys = [self.gen_key(p, prompts) for p in points]
        score_keys = [self.score_keys(k) for k in gen_keys]
        keys = [point_key(k, s, p.describe()) for p, k, s in zip(points, gen_keys, score_keys)]
        results = [self.cache.load_point(k) for k in keys]
        # A point is done when its record and its samples (which the report shows) are sound: a damaged or missing
        # one is recomputed (equal merges share samples, so a samples file is checked once per call).
        sound = {k: self.cache.has_samples(k) for k in set(gen_keys)}
        results = [r if r is not None and sound[k] else None for r, k in zip(results, gen_keys)]
        todo = [i for i, r in enumerate(results) if r is None]
        routes = {i: self.router.route(points[i].merge_spec()) for i in todo}

        def generate_missing(indices: list[int]) -> None:
            # One generation per distinct merge: equal merges asked for in different ways share their samples.
            first_of: dict[str, int] = {}
            for i in indices:
                if not self.cache.has_samples(gen_keys[i]):
                    first_of.setdefault(gen_keys[i], i)
            self.generator.generate([(points[i], gen_keys[i], routes[i]) for i in first_of.values()], prompts)

        def score(i: int) -> None:
            with timed("sweep: scoring"):
                objectives = self.scorer.score(points[i], gen_keys[i], routes[i], score_keys[i], prompts)
            results[i] = {"key": keys[i], "gen_key": gen_keys[i], **points[i].describe(), "lines_applied": applied[i],
                          "prompt_ids": [p.prompt_id for p in prompts], "objectives": objectives,
                          "response_tokens_mean": mean_response_tokens(self.cache.load_samples(gen_keys[i]))}
            self.cache.save_point(keys[i], results[i])

        # Adapter points: generated together (several per call where the backend can), then scored on θ0.
        adapter_points = [i for i in todo if routes[i] == ADAPTER]
        generate_missing(adapter_points)
        if adapter_points:
            self.generator.backend.idle()  # reward models score next: an engine may lend them its memory
        for i in adapter_points:
            score(i)
        # Dense points one at a time: a metric of the policy then finds the point's weights still in place.
        for i in todo:
            if routes[i] != ADAPTER:
                generate_missing([i])
                self.generator.backend.idle()
                score(i)
        return results

    def fit_normalizers(self, base_point: Point, prompts,
                        on_main: Callable[[Callable[[], dict], str], dict] = lambda fn, what: fn()) -> None:
        """z-score rewards without a reference file are fitted on θ0's samples of `prompts` (generated once).

        `on_main` runs the fit on one process and hands its statistics to every process (pipelines.distributed):
        all ranks then score with the same mean and std, whatever their own generation would have given."""
        needing = [o for o in self.objectives if not o.reward.normalizer.fitted]
        if not needing:
            return
        base_point = self.resolved(base_point)[0]
        gen_key = self.gen_key(base_point, prompts)
        for objective in needing:  # the z-scores depend on those samples: so do the scores' keys
            objective.identity = {**objective.identity, "zscore_fitted_on": gen_key}
        route = self.router.route(base_point.merge_spec())

        def fit() -> dict:
            if self.cache.load_samples(gen_key) is None:
                self.generator.generate([(base_point, gen_key, route)], prompts)
            rows = self.cache.load_samples(gen_key)
            with self.scorer.models.policy(base_point, route) as policy:
                fit_normalizers([o.reward for o in needing], [r["prompt"] for r in rows],
                                [r["response"] for r in rows], policy=policy)
            return {o.reward.name: o.reward.normalizer.record() for o in needing}

        fitted = on_main(fit, "fitting the z-score normalisers on θ0's samples")
        for objective in needing:
            objective.reward.normalizer.restore(fitted[objective.reward.name])
