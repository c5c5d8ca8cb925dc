"""Generate the samples of sweep points through the backend protocol, and cache them.

Dense points: the backend builds the merge where its model lives (`load_merge`) and generates, one point per
call. Adapter points: θ0 is loaded as the dense weights, each point's exact soup adapter is written once (its
directory named by the point's generation key), and the backend serves up to `max_points_per_call` of them
per call.
"""
from __future__ import annotations

from pathlib import Path

from lines import MergeInputs
from lines.engine import TensorMerger
from lines.lora_soup import write_adapter_soup
from lines.recipe import MergeSpec

from ..generation.protocol import AdapterRef, GenerationBackend, MergeRequest
from ..stage_times import timed
from .cache import SweepCache, merge_key
from .plan import Point
from .routing import ADAPTER

BASE_SPEC_METHOD = "task_arithmetic"


class PointGenerator:
    def __init__(self, backend: GenerationBackend, inputs: MergeInputs, base: str, policies: list[str],
                 models_fingerprint: dict, cache: SweepCache, adapter_dir: Path | None):
        self.backend = backend
        self.inputs = inputs
        self.base, self.policies = str(base), tuple(str(p) for p in policies)
        self.models_fingerprint = models_fingerprint
        self.cache = cache
        self.adapter_dir = adapter_dir

    def request(self, spec: MergeSpec) -> MergeRequest:
        return MergeRequest(self.base, self.policies, spec, merge_key(self.models_fingerprint, spec))

    def base_request(self) -> MergeRequest:
        return self.request(MergeSpec(method=BASE_SPEC_METHOD, weights=[0.0] * len(self.policies)))

    def adapter(self, point: Point) -> AdapterRef:
        """The point's soup adapter on disk, written once: its directory and name are the merge's content key,
        so a name never stands for other weights and both prompt sets share it."""
        spec = point.merge_spec()
        key = self.request(spec).key
        path = self.adapter_dir / key
        if not path.exists():
            lines = TensorMerger(spec, self.inputs).resolve_lines(progress=False)
            # Ranks sharing the run directory may write the same soup at once: the first finished copy stays.
            write_adapter_soup(self.inputs, spec, path, lines, card=f"sweep point {point.describe()}\n",
                               keep_existing=True)
        return AdapterRef(f"pt_{key[:16]}", str(path))

    def generate(self, work: list[tuple[Point, str, str]], prompts) -> None:
        """Samples of every (point, gen_key, route) into the cache."""
        dense = [(p, k) for p, k, route in work if route != ADAPTER]
        adapters = [(p, k) for p, k, route in work if route == ADAPTER]
        for point, key in dense:
            with timed("sweep: merges"):
                self.backend.load_merge(self.request(point.merge_spec()))
            with timed("sweep: generation"):
                rows = self.backend.generate(prompts)
            self.cache.save_samples(key, [row.to_dict() for row in rows])
        if not adapters:
            return
        with timed("sweep: merges"):
            self.backend.load_merge(self.base_request())  # soups are served on θ0
        step = self.backend.capabilities.max_points_per_call or len(adapters)
        for start in range(0, len(adapters), step):
            chunk = adapters[start:start + step]
            with timed("sweep: merges"):
                refs = [self.adapter(point) for point, _ in chunk]
            with timed("sweep: generation"):
                generated = list(self.backend.generate_adapters(prompts, refs))
            for (point, key), rows in zip(chunk, generated):
                self.cache.save_samples(key, [row.to_dict() for row in rows])
