"""Evaluate one sweep point: write its merge into the live model, generate, score every objective, summarise."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lines import MergeInputs, iter_merged_tensors, merge_into_model
from reward_models import PolicyHandle, Reward, score_rewards

from .cache import SweepCache, stable_hash
from .plan import Point


@dataclass
class Objective:
    """A reward of the front or a fluency metric, with the config that built it (part of its cache key)."""

    reward: Reward
    spec: dict
    is_metric: bool


def summarize(values: np.ndarray, prompt_index: np.ndarray, n_prompts: int) -> dict:
    """Mean over samples; per-prompt means; standard error over prompts (samples of one prompt are not
    independent, so the prompt is the unit of the standard error and of the bootstrap)."""
    sums = np.bincount(prompt_index, weights=values, minlength=n_prompts)
    counts = np.bincount(prompt_index, minlength=n_prompts)
    per_prompt = sums / np.maximum(counts, 1)
    std = float(per_prompt.std(ddof=1)) if n_prompts > 1 else math.nan
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
            "stderr": std / math.sqrt(n_prompts) if n_prompts > 1 else math.nan, "n": int(values.size),
            "n_prompts": int(n_prompts), "per_prompt": per_prompt.tolist()}


class PointEvaluator:
    """Holds the live generation model and evaluates points into the cache, recomputing only what is missing."""

    def __init__(self, generator, inputs: MergeInputs, objectives: list[Objective], cache: SweepCache,
                 models_fingerprint: dict, generation_settings: dict, policy_model_factory=None):
        self.generator = generator
        self.inputs = inputs
        self.objectives = objectives
        self.cache = cache
        self.models_fingerprint = models_fingerprint
        self.generation_settings = generation_settings
        self._policy_model_factory = policy_model_factory
        self._policy_model = None
        self._generator_holds: str | None = None  # gen_key of the weights now in the live generator
        self._policy_holds: str | None = None

    # -- keys ----------------------------------------------------------------------------------------------
    def gen_key(self, point: Point, prompts) -> str:
        return stable_hash({"models": self.models_fingerprint, "merge": point.merge,
                            "prompts": [(p.prompt_id, p.prompt) for p in prompts],
                            "generation": self.generation_settings})

    def score_key(self, gen_key: str, objective: Objective) -> str:
        return stable_hash({"gen": gen_key, "objective": objective.spec})

    # -- live weights --------------------------------------------------------------------------------------
    def _load_into_generator(self, point: Point, gen_key: str) -> None:
        if self._generator_holds == gen_key:
            return
        spec = point.merge_spec()
        if hasattr(self.generator, "model"):  # transformers backend: write straight into its parameters
            merge_into_model(self.generator.model, self.inputs, spec)
        else:  # a serving engine (vLLM): stream whole merged tensors to its in-place loader
            self.generator.load_weights(iter_merged_tensors(self.inputs, spec))
        self._generator_holds = gen_key

    def _policy_handle(self, point: Point, gen_key: str) -> PolicyHandle:
        """The evaluated policy as a transformers model, for metrics computed from its weights."""
        if hasattr(self.generator, "model"):
            self._load_into_generator(point, gen_key)
            return PolicyHandle(self.generator.model, self.generator.tokenizer)
        if self._policy_model is None:
            self._policy_model = self._policy_model_factory()
        if self._policy_holds != gen_key:
            merge_into_model(self._policy_model, self.inputs, point.merge_spec())
            self._policy_holds = gen_key
        return PolicyHandle(self._policy_model, self.generator.tokenizer)

    # -- one point -----------------------------------------------------------------------------------------
    def evaluate(self, point: Point, prompts) -> dict:
        gen_key = self.gen_key(point, prompts)
        score_keys = {o.reward.name: self.score_key(gen_key, o) for o in self.objectives}
        point_key = stable_hash({"gen": gen_key, "scores": score_keys, "point": point.describe()})
        cached = self.cache.load_point(point_key)
        if cached is not None:
            return cached
        rows = self.cache.load_samples(gen_key)
        if rows is None:
            self._load_into_generator(point, gen_key)
            rows = [r.to_dict() for r in self.generator.generate(prompts)]
            self.cache.save_samples(gen_key, rows)
        index = {p.prompt_id: i for i, p in enumerate(prompts)}
        prompt_index = np.array([index[r["prompt_id"]] for r in rows])
        texts, responses = [r["prompt"] for r in rows], [r["response"] for r in rows]
        objectives = {}
        for objective in self.objectives:
            key = score_keys[objective.reward.name]
            record = self.cache.load_scores(key)
            if record is None:
                policy = self._policy_handle(point, gen_key) if objective.reward.needs_policy else None
                scored = score_rewards([objective.reward], texts, responses, policy=policy)[objective.reward.name]
                record = {"values": scored.values.tolist(), "raw": scored.raw.tolist(),
                          "normalization": scored.normalization}
                self.cache.save_scores(key, record)
            summary = summarize(np.asarray(record["values"], dtype=np.float64), prompt_index, len(prompts))
            summary.update(higher_is_better=objective.reward.higher_is_better, is_metric=objective.is_metric,
                           normalization=record["normalization"])
            objectives[objective.reward.name] = summary
        result = {"key": point_key, "gen_key": gen_key, **point.describe(),
                  "prompt_ids": [p.prompt_id for p in prompts], "objectives": objectives,
                  "response_tokens_mean": float(np.mean([r["response_tokens"] for r in rows])) if rows else 0.0}
        self.cache.save_point(point_key, result)
        return result
