"""Evaluate sweep points: put each point's weights in front of the live model, generate, score, summarise.

Two routes to the live model, chosen once per sweep:
- dense: the merge is written into the model's parameters in place (lines.merge_into_model), or streamed to a
  serving engine's in-place loader;
- adapter (LoRA policies): the base is never rewritten; each point is the exact soup adapter (lines.lora_soup),
  several points generated in one mixed-adapter batch (peft `adapter_names`), or served as LoRA requests.
  Points whose method has no exact adapter form (TIES, DARE, ...) fall back to the dense route, with a log line.
"""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lines import MergeInputs, iter_merged_tensors, merge_into_model
from lines.engine import TensorMerger
from lines.merge_methods import linear_coefficients
from lines.recipe import MergeSpec
from reward_models import PolicyHandle, Reward, score_rewards

from lines.fingerprints import stable_hash

from ..statistics import summarize
from .cache import SweepCache
from .plan import Point

log = logging.getLogger(__name__)
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass
class Objective:
    """A reward of the front or a fluency metric, with the config that built it (part of its cache key)."""

    reward: Reward
    spec: dict
    is_metric: bool


def canonical_merge(merge: dict) -> dict:
    """The same weights get the same key however they were asked for: a normalised `linear` soup is
    task_arithmetic with normalised weights, and LiNeS with α = 1, β = 0 is no LiNeS. So the plain soup at
    w = (1, 0), the policy alone and the forgetting study's γ = 1 point are generated once."""
    method, weights = merge["method"], list(merge["weights"])
    params, lines = dict(merge.get("parameters") or {}), merge.get("lines")
    if method == "linear" and params.get("normalize", True) and sum(weights) > 0:
        method, weights, params = "task_arithmetic", [w / sum(weights) for w in weights], {}
    elif method == "linear" and not params.get("normalize", True):
        method, params = "task_arithmetic", {}
    if lines and lines.get("alpha") == 1 and lines.get("beta") == 0 and lines.get("gamma") is None:
        lines = None
    return {"method": method, "weights": [round(w, 12) for w in weights], "parameters": params, "lines": lines}


def is_base_point(spec: MergeSpec) -> bool:
    return spec.method == "task_arithmetic" and not any(spec.weights)


class PointEvaluator:
    """Holds the live generation model and evaluates points into the cache, recomputing only what is missing."""

    def __init__(self, generator, inputs: MergeInputs, objectives: list[Objective], cache: SweepCache,
                 models_fingerprint: dict, generation_settings: dict, policy_model_factory=None,
                 adapter_dir: Path | None = None, max_adapter_rank: int | None = None):
        self.generator = generator
        self.inputs = inputs
        self.objectives = objectives
        self.cache = cache
        self.models_fingerprint = models_fingerprint
        self.generation_settings = generation_settings
        self._policy_model_factory = policy_model_factory
        self._policy_model = None
        self.adapter_dir = adapter_dir  # set: the adapter route
        self.max_adapter_rank = max_adapter_rank
        self._base_holds: str | None = None  # gen_key of the dense weights now in the live model (None: as loaded)
        self._policy_holds: str | None = None
        self._fallback_logged: set[str] = set()

    # -- keys ----------------------------------------------------------------------------------------------
    def gen_key(self, point: Point, prompts) -> str:
        return stable_hash({"models": self.models_fingerprint, "merge": canonical_merge(point.merge),
                            "prompts": [(p.prompt_id, p.prompt) for p in prompts],
                            "generation": self.generation_settings})

    def score_key(self, gen_key: str, objective: Objective) -> str:
        return stable_hash({"gen": gen_key, "objective": objective.spec})

    # -- routes --------------------------------------------------------------------------------------------
    @property
    def _live_model(self):
        return getattr(self.generator, "model", None)

    @property
    def _wrapped(self) -> bool:
        """The live model is a peft model: dense weights go under its adapters, and run with them disabled."""
        return hasattr(self._live_model, "get_base_model") and hasattr(self._live_model, "peft_config")

    def uses_adapter(self, point: Point) -> bool:
        """Whether this point is served as a soup adapter (adapter route, and the method has an exact one)."""
        if self.adapter_dir is None:
            return False
        spec = point.merge_spec()
        if is_base_point(spec):
            return True
        exact = linear_coefficients(spec.method, TensorMerger(spec, self.inputs).weights, spec.parameters) is not None
        small = self.max_adapter_rank is None or self._soup_rank() <= self.max_adapter_rank
        if not (exact and small) and spec.method not in self._fallback_logged:
            self._fallback_logged.add(spec.method)
            why = (f"method {spec.method} has no exact adapter form" if not exact else
                   f"the soup's rank {self._soup_rank()} exceeds the server's max_lora_rank {self.max_adapter_rank}")
            log.info("sweep: %s; those points are merged densely into the live model instead", why)
        return exact and small

    def _soup_rank(self) -> int:
        from lines.lora_soup import soup_rank

        return soup_rank(self.inputs)

    def _adapter_path(self, point: Point, gen_key: str) -> Path:
        """The point's soup adapter on disk (written once; the directory name is its content key)."""
        from lines.lora_soup import write_adapter_soup

        path = self.adapter_dir / gen_key
        if not path.exists():
            spec = point.merge_spec()
            lines = TensorMerger(spec, self.inputs).resolve_lines(progress=False)
            write_adapter_soup(self.inputs, spec, path, lines, card=f"sweep point {point.describe()}\n")
        return path

    def _adapter_name(self, point: Point, gen_key: str) -> str:
        if is_base_point(point.merge_spec()):
            return BASE_ADAPTER
        name = f"pt_{gen_key[:16]}"
        model = self._live_model
        if model is not None and name not in model.peft_config:
            model.load_adapter(str(self._adapter_path(point, gen_key)), adapter_name=name)
        return name

    def _write_dense(self, point: Point, gen_key: str) -> None:
        """The point's merged weights into the live model (the base under the adapters, if any)."""
        if self._base_holds == gen_key:
            return
        spec = point.merge_spec()
        if self._live_model is not None:
            target = self._live_model.get_base_model() if self._wrapped else self._live_model
            merge_into_model(target, self.inputs, spec)
        else:  # a serving engine (vLLM): stream whole merged tensors to its in-place loader
            self.generator.load_weights(iter_merged_tensors(self.inputs, spec))
        self._base_holds = gen_key

    def restore_base(self, prompts) -> None:
        """Adapter points need θ0 underneath: undo a dense point written under the adapters."""
        if self._base_holds is None:
            return
        zero = MergeSpec(method="task_arithmetic", weights=[0.0] * len(self.inputs.policies))
        zero_point = Point("base", "", "", tuple(zero.weights), zero.model_dump())
        self._write_dense(zero_point, self.gen_key(zero_point, prompts))

    # -- generation ----------------------------------------------------------------------------------------
    def _generate(self, points: list[Point], gen_keys: list[str], prompts) -> None:
        adapter_points, dense_points = [], []
        for point, key in zip(points, gen_keys):
            (adapter_points if self.uses_adapter(point) else dense_points).append((point, key))
        for point, key in dense_points:
            self._write_dense(point, key)
            if self._wrapped:
                rows = self.generator.generate_with_adapters(prompts, [BASE_ADAPTER])[BASE_ADAPTER]
            else:
                rows = self.generator.generate(prompts)
            self.cache.save_samples(key, [r.to_dict() for r in rows])
        if not adapter_points:
            return
        self.restore_base(prompts)
        if hasattr(self.generator, "generate_with_adapters"):  # transformers + peft: one mixed batch
            names = [self._adapter_name(p, k) for p, k in adapter_points]
            rows = self.generator.generate_with_adapters(prompts, names)
            for (point, key), name in zip(adapter_points, names):
                self.cache.save_samples(key, [r.to_dict() for r in rows[name]])
                if name != BASE_ADAPTER:
                    self._live_model.delete_adapter(name)
        else:  # vLLM: each point a LoRA request
            from ..generation.vllm_backend import LoraAdapter

            for point, key in adapter_points:
                lora = None if is_base_point(point.merge_spec()) else LoraAdapter(f"pt_{key[:16]}",
                                                                                  str(self._adapter_path(point, key)))
                rows = self.generator.generate(prompts, lora=lora)
                self.cache.save_samples(key, [r.to_dict() for r in rows])

    # -- the policy, for metrics computed from its weights ---------------------------------------------------
    @contextlib.contextmanager
    def _policy(self, point: Point, gen_key: str, prompts):
        model = self._live_model
        if model is not None and self._wrapped:  # transformers + peft
            if self.uses_adapter(point):
                self.restore_base(prompts)
                name = self._adapter_name(point, gen_key)
                if name == BASE_ADAPTER:
                    with model.disable_adapter():
                        yield PolicyHandle(model, self.generator.tokenizer)
                    return
                idle = next(n for n in model.peft_config if n != name)
                model.set_adapter(name)
                try:
                    yield PolicyHandle(model, self.generator.tokenizer)
                finally:
                    model.set_adapter(idle)  # never delete the active adapter
                    model.delete_adapter(name)
                return
            self._write_dense(point, gen_key)
            with model.disable_adapter():
                yield PolicyHandle(model, self.generator.tokenizer)
            return
        if model is not None:
            self._write_dense(point, gen_key)
            yield PolicyHandle(model, self.generator.tokenizer)
            return
        if self._policy_model is None:  # a serving engine: a transformers copy for the metrics
            self._policy_model = self._policy_model_factory()
        if self._policy_holds != gen_key:
            merge_into_model(self._policy_model, self.inputs, point.merge_spec())
            self._policy_holds = gen_key
        yield PolicyHandle(self._policy_model, self.generator.tokenizer)

    # -- points --------------------------------------------------------------------------------------------
    def evaluate(self, point: Point, prompts) -> dict:
        return self.evaluate_many([point], prompts)[0]

    def evaluate_many(self, points: list[Point], prompts) -> list[dict]:
        """Evaluate several points; those needing generation share batches where the route allows it."""
        gen_keys = [self.gen_key(p, prompts) for p in points]
        score_keys = [{o.reward.name: self.score_key(k, o) for o in self.objectives} for k in gen_keys]
        point_keys = [stable_hash({"gen": k, "scores": s, "point": p.describe()})
                      for p, k, s in zip(points, gen_keys, score_keys)]
        results = [self.cache.load_point(k) for k in point_keys]
        todo = [i for i, r in enumerate(results) if r is None]
        # One generation per distinct merge: equal merges asked for in different ways share their samples.
        first_of = {}
        for i in todo:
            first_of.setdefault(gen_keys[i], i)
        missing = [i for i in first_of.values() if self.cache.load_samples(gen_keys[i]) is None]
        if missing:
            self._generate([points[i] for i in missing], [gen_keys[i] for i in missing], prompts)
        for i in todo:
            results[i] = self._score(points[i], gen_keys[i], score_keys[i], point_keys[i], prompts)
        return results

    def _score(self, point: Point, gen_key: str, score_keys: dict, point_key: str, prompts) -> dict:
        rows = self.cache.load_samples(gen_key)
        prompt_ids = [r["prompt_id"] for r in rows]
        texts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
        objectives = {}
        for objective in self.objectives:
            key = score_keys[objective.reward.name]
            record = self.cache.load_scores(key)
            if record is None:
                with (self._policy(point, gen_key, prompts) if objective.reward.needs_policy
                      else contextlib.nullcontext()) as policy:
                    scored = score_rewards([objective.reward], texts, responses, policy=policy)[objective.reward.name]
                record = {"values": scored.values.tolist(), "raw": scored.raw.tolist(),
                          "normalization": scored.normalization}
                self.cache.save_scores(key, record)
            summary = summarize(record["values"], prompt_ids, [p.prompt_id for p in prompts])
            summary.update(higher_is_better=objective.reward.higher_is_better, is_metric=objective.is_metric,
                           normalization=record["normalization"])
            objectives[objective.reward.name] = summary
        result = {"key": point_key, "gen_key": gen_key, **point.describe(),
                  "prompt_ids": [p.prompt_id for p in prompts], "objectives": objectives,
                  "response_tokens_mean": float(np.mean([r["response_tokens"] for r in rows])) if rows else 0.0}
        self.cache.save_point(point_key, result)
        return result
