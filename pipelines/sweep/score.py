"""Score a point's cached samples with every objective (scores cached per objective) and summarise them.

Metrics of the policy itself (KL to θ0, perplexity) need the point's model: the backend's live module when it
exposes one (`policy_model`), else the sweep's own transformers copy of θ0 with the merge written into it.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np

from lines import MergeInputs, merge_into_model
from reward_models import PolicyHandle
from reward_models.text_format import policy_prompt_ids

from ..generation.protocol import AdapterRef, GenerationBackend
from ..summary import summarize
from .cache import SweepCache
from .generate import PointGenerator
from .objectives import Objective
from .plan import Point
from .routing import ADAPTER


class PolicyModels:
    """The model of a point, for metrics computed from its weights."""

    def __init__(self, backend: GenerationBackend, generator: PointGenerator, inputs: MergeInputs,
                 copy_factory: Callable[[], object]):
        self.backend, self.generator, self.inputs = backend, generator, inputs
        self._copy_factory = copy_factory
        self._copy = None
        self._copy_holds: str | None = None

    @contextlib.contextmanager
    def policy(self, point: Point, route: str) -> Iterator[PolicyHandle]:
        spec = point.merge_spec()
        if self.backend.capabilities.policy_model:
            adapter: AdapterRef | None = None
            if route == ADAPTER:
                self.backend.load_merge(self.generator.base_request())
                adapter = self.generator.adapter(point)
            else:
                self.backend.load_merge(self.generator.request(spec))
            with self.backend.policy(adapter) as handle:
                yield handle
            return
        if self._copy is None:
            self._copy = self._copy_factory()
        key = self.generator.request(spec).key
        if self._copy_holds != key:
            merge_into_model(self._copy, self.inputs, spec)  # exact for adapter points too (θ0 + Σ w_i B_i A_i)
            self._copy_holds = key
        yield PolicyHandle(self._copy, self.backend.tokenizer)


class PointScorer:
    def __init__(self, objectives: list[Objective], cache: SweepCache, models: PolicyModels):
        self.objectives, self.cache, self.models = objectives, cache, models

    def score(self, point: Point, gen_key: str, route: str, score_keys: dict, prompts) -> dict[str, dict]:
        """{objective name: summary} for one point whose samples are cached."""
        rows = self.cache.load_samples(gen_key)
        prompt_ids, order = [r["prompt_id"] for r in rows], [p.prompt_id for p in prompts]
        out = {}
        for objective in self.objectives:
            record = self.cache.load_scores(score_keys[objective.name])
            if record is None:
                record = self._score_one(objective, point, route, rows)
                self.cache.save_scores(score_keys[objective.name], record)
            if record.get("unit") == "text":  # a metric on held-out texts: the text is the unit
                summary = summarize(record["values"], record["ids"], record["ids"])
            else:
                summary = summarize(record["values"], prompt_ids, order)
            summary.update(higher_is_better=objective.reward.higher_is_better, is_metric=objective.is_metric,
                           normalization=record["normalization"], unit=record.get("unit", "prompt"))
            out[objective.name] = summary
        return out

    def _score_one(self, objective: Objective, point: Point, route: str, rows: list[dict]) -> dict:
        reward = objective.reward
        with (self.models.policy(point, route) if reward.needs_policy
              else contextlib.nullcontext()) as policy:
            if reward.per_text:
                raw = reward.score_texts(policy)
            elif reward.uses_token_ids and rows and all(r.get("response_ids") for r in rows):
                raw = reward.score_ids([policy_prompt_ids(policy.tokenizer, r["prompt"]) for r in rows],
                                       [r["response_ids"] for r in rows], policy)
            else:
                raw = reward.score([r["prompt"] for r in rows], [r["response"] for r in rows], policy=policy)
        record = {"values": reward.normalizer.apply(raw, reward.name).tolist(), "raw": raw.tolist(),
                  "normalization": reward.normalizer.record()}
        if reward.per_text:
            record.update(unit="text", ids=reward.text_ids)
        return record


def mean_response_tokens(rows: list[dict]) -> float:
    return float(np.mean([r["response_tokens"] for r in rows])) if rows else 0.0
