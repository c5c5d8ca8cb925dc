"""Generation with vLLM (GPU, optional extra `vllm`): one engine for the whole sweep.

Each sweep point's merged weights are written into the running engine in place — sent in chunks to
every worker with `LLM.collective_rpc` and loaded by the worker's model `load_weights` (see
vllm_worker.py) — then the prefix cache is reset, since cached KV blocks were computed with the old
weights. LoRA policies are served per request with `LoRARequest`.

All vLLM calls sit behind `VLLMApi`, a thin seam: tests substitute a fake and exercise everything else
(engine created once, sampling parameters, LoRA requests, weight chunks) without a GPU.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

import torch

from lines import iter_merged_tensors
from reward_models.text_format import policy_prompt_ids
from reward_models.tokenizer_setup import ensure_pad_token

from ..errors import PipelineError
from .config import GenerationConfig, parse_generation_config, sample_seed
from .dense_weights import DenseWeights
from .protocol import AdapterRef, Capabilities, MergeRequest
from .rows import GenerationRow, as_prompt_pairs

log = logging.getLogger(__name__)

WORKER_EXTENSION = "pipelines.generation.vllm_worker.InPlaceWeightLoader"


class VLLMApi:
    """The only code that touches vllm: build the engine, sampling parameters and LoRA requests."""

    def __init__(self):
        try:
            import vllm  # noqa: F401
        except ImportError as err:
            raise PipelineError(f"the vllm backend needs the `vllm` extra (pip install -e '.[vllm]' on a CUDA "
                                f"machine); import failed: {err}") from None

    def create_engine(self, **kwargs) -> Any:
        from vllm import LLM

        return LLM(**kwargs)

    def sampling_params(self, **kwargs) -> Any:
        from vllm import SamplingParams

        return SamplingParams(**kwargs)

    def lora_request(self, name: str, int_id: int, path: str) -> Any:
        from vllm.lora.request import LoRARequest

        return LoRARequest(lora_name=name, lora_int_id=int_id, lora_path=path)


class VLLMGenerator:
    """The vLLM backend: one engine for the whole sweep; dense merges streamed into it, soups as LoRA requests.
    It has no torch module of the policy in this process: metrics of the policy use the sweep's own copy."""


    def __init__(self, model_path: str, config: GenerationConfig | dict | None = None, tokenizer=None,
                 api: VLLMApi | None = None):
        self.config = parse_generation_config(config)
        self.api = api or VLLMApi()
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer = tokenizer
        ensure_pad_token(tokenizer, None)
        settings = self.config.vllm
        engine_kwargs = dict(model=model_path, tokenizer=model_path, seed=self.config.seed,
                             dtype="auto" if self.config.dtype == "auto" else self.config.dtype,
                             gpu_memory_utilization=settings.gpu_memory_utilization,
                             tensor_parallel_size=settings.tensor_parallel_size,
                             enforce_eager=settings.enforce_eager, worker_extension_cls=WORKER_EXTENSION)
        if settings.max_model_len is not None:
            engine_kwargs["max_model_len"] = settings.max_model_len
        if settings.enable_lora:
            engine_kwargs.update(enable_lora=True, max_lora_rank=settings.max_lora_rank, max_loras=settings.max_loras)
        self.engine_kwargs = engine_kwargs
        self.engine = self.api.create_engine(**engine_kwargs)  # once, for the whole sweep
        self._lora_ids: dict[tuple[str, str], int] = {}
        self._dense = DenseWeights()
        self.identity = {"backend": "vllm", "dtype": engine_kwargs["dtype"], "max_model_len": settings.max_model_len,
                         "tensor_parallel_size": settings.tensor_parallel_size}
        self.capabilities = Capabilities(dense_weights=True, lora_adapters=settings.enable_lora,
                                         max_points_per_call=1, max_lora_rank=settings.max_lora_rank,
                                         policy_model=False)

    # ------------------------------------------------------------------------------------------
    def sampling_params_for(self, seed: int) -> Any:
        """One request = one sample (n=1) with its own seed, so sample k of a prompt does not depend on n."""
        if self.config.greedy:
            return self.api.sampling_params(n=1, temperature=0.0, max_tokens=self.config.max_new_tokens)
        return self.api.sampling_params(n=1, temperature=self.config.temperature, top_p=self.config.top_p,
                                        max_tokens=self.config.max_new_tokens, seed=seed)

    def lora_request_for(self, adapter: AdapterRef | None) -> Any:
        """LoRARequest with a stable integer id per (name, path): vLLM caches adapters by id, so a changed
        adapter must come with a new name or path."""
        if adapter is None:
            return None
        if not self.config.vllm.enable_lora:
            raise PipelineError("generation: a LoRA policy was given but the engine was built without LoRA; "
                                "set generation.vllm.enable_lora: true")
        key = (adapter.name, str(adapter.path))
        if key not in self._lora_ids:
            self._lora_ids[key] = len(self._lora_ids) + 1  # vLLM reserves id 0
        return self.api.lora_request(adapter.name, self._lora_ids[key], str(adapter.path))

    def generate(self, prompts: Sequence, lora: AdapterRef | None = None) -> list[GenerationRow]:
        pairs = as_prompt_pairs(prompts)
        encoded = [policy_prompt_ids(self.tokenizer, text) for _, text in pairs]
        work = [(p, s, sample_seed(self.config.seed, pairs[p][0], s)) for p in range(len(pairs))
                for s in range(self.config.n)]
        requests = [{"prompt_token_ids": encoded[p]} for p, _, _ in work]
        params = [self.sampling_params_for(seed) for _, _, seed in work]
        kwargs = {"use_tqdm": True}
        if lora is not None:
            kwargs["lora_request"] = self.lora_request_for(lora)
        outputs = self.engine.generate(requests, params, **kwargs)  # returned in request order
        rows = []
        for (p, s, seed), output in zip(work, outputs):
            completion = output.outputs[0]
            rows.append(GenerationRow(pairs[p][0], pairs[p][1], completion.text, len(encoded[p]),
                                      len(completion.token_ids), s, seed, tuple(completion.token_ids)))
        return rows

    def generate_adapters(self, prompts: Sequence, adapters: Sequence[AdapterRef]) -> list[list[GenerationRow]]:
        """One LoRA request set per call (max_points_per_call = 1)."""
        if len(adapters) > 1:
            raise ValueError("the vllm backend serves one adapter per generate call")
        return [self.generate(prompts, lora=adapter) for adapter in adapters]

    def load_merge(self, request: MergeRequest) -> None:
        """The merged weights, built here tensor by tensor and streamed into the running engine."""
        if self._dense.holds(request):
            return
        self.load_weights(iter_merged_tensors(self._dense.inputs(request), request.spec))
        self._dense.now(request)

    def policy(self, adapter: AdapterRef | None = None):
        raise NotImplementedError("the vllm backend has no policy module in this process (policy_model is False)")

    # ------------------------------------------------------------------------------------------
    def _chunks(self, named_tensors) -> Iterable[list[tuple[str, torch.Tensor]]]:
        limit = self.config.vllm.weight_chunk_mb * 2**20
        chunk, size = [], 0
        items = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
        for name, tensor in items:
            tensor = tensor.detach().to("cpu").contiguous()
            chunk.append((name, tensor))
            size += tensor.numel() * tensor.element_size()
            if size >= limit:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    def load_weights(self, named_tensors) -> int:
        """Write merged weights (HF state-dict names) into the running engine, without a new engine."""
        total = 0
        for chunk in self._chunks(named_tensors):
            self.engine.collective_rpc("load_named_tensors", args=(chunk,))
            total += len(chunk)
        self.engine.reset_prefix_cache()  # cached KV blocks belong to the previous weights
        return total

    def close(self) -> None:
        self._dense.close()
        engine, self.engine = self.engine, None
        del engine
