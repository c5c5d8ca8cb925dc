"""Generation with transformers' `generate`, on CPU or GPU, around ONE live model.

The sweep writes each merged model into `generator.model` (or through `load_weights`) between points;
nothing is reloaded. Batches are left-padded (decoder-only models continue from the right edge),
prompts go through the chat template when the tokenizer has one, and each sample has its own seed
(see seeded_sampling.py), so the same seed gives the same outputs whatever the batch size.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterable, Iterator, Mapping, Sequence

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, LogitsProcessorList
from transformers import GenerationConfig as HFGenerationConfig

from lines import merge_into_model
from lines.models import load_causal_lm
from reward_models import PolicyHandle
from reward_models.text_format import policy_prompt_ids
from reward_models.tokenizer_setup import ensure_pad_token

from ..config.generation import GenerationConfig, parse_generation_config
from ..config.sampling import sample_seed
from ..errors import PipelineError
from .dense_weights import DenseWeights
from .protocol import AdapterRef, Capabilities, MergeRequest
from .rows import GenerationRow, as_prompt_pairs, decode_response
from .seeded_sampling import SeededRowSampler

log = logging.getLogger(__name__)

NamedTensors = Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed-adapter batch
# Soup adapters kept loaded between calls: enough for a batch of points and their metrics, bounded memory.
MAX_RESIDENT_ADAPTERS = 64


class TransformersGenerator:
    """The transformers backend: one live module, merged into in place, LoRA soups as peft adapters."""

    capabilities = Capabilities(dense_weights=True, lora_adapters=True, max_points_per_call=None,
                                max_lora_rank=None, policy_model=True)

    def __init__(self, model, tokenizer, config: GenerationConfig | dict | None = None):
        self.config = parse_generation_config(config)
        self.model = model.eval()
        self.tokenizer = tokenizer
        parameter = next(model.parameters())
        self.identity = {"backend": "transformers", "device": parameter.device.type, "dtype": str(parameter.dtype)}
        self._peft = None  # the peft model wrapping `model` once an adapter is served
        self._recent: dict[str, None] = {}  # resident adapters, least recently used first
        # The model is taken to hold θ0 as given (a backend is built from θ0); a merge request changes that.
        self._dense = DenseWeights()
        if self.tokenizer.eos_token_id is None:
            raise PipelineError("the policy tokenizer has no EOS token; generation could not stop early — "
                                "set eos_token in the tokenizer config")
        # Checked EOS first, so a missing pad token becomes EOS: adding a new token would resize the
        # embeddings and the merged weights would no longer fit the live model.
        ensure_pad_token(tokenizer, None)

    @classmethod
    def from_pretrained(cls, path: str, config: GenerationConfig | dict | None = None) -> "TransformersGenerator":
        config = parse_generation_config(config)
        model = load_causal_lm(path, config.device, config.dtype, "generation: policy")
        return cls(model, AutoTokenizer.from_pretrained(str(path), trust_remote_code=False), config)

    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def load_weights(self, named_tensors: NamedTensors, strict: bool = False) -> int:
        """Copy tensors into the live model's parameters/buffers in place, by state-dict name.

        Tensors are cast to each parameter's dtype and device. Tied weights (embeddings / LM head) may
        appear under either name. Unknown names and shape mismatches raise; with `strict`, so does a
        parameter left out. Returns how many tensors were copied.
        """
        targets = self.model.state_dict(keep_vars=True)
        items = named_tensors.items() if isinstance(named_tensors, Mapping) else named_tensors
        seen: set[str] = set()
        for name, tensor in items:
            target = targets.get(name)
            if target is None:
                close = [k for k in targets if k.split(".")[-1] == name.split(".")[-1]][:3]
                raise PipelineError(f"load_weights: the live model has no tensor '{name}' "
                                    f"(similar names: {close}); pass names as in the model's state_dict")
            if tuple(target.shape) != tuple(tensor.shape):
                raise PipelineError(f"load_weights: '{name}' has shape {tuple(tensor.shape)} but the live model's "
                                    f"is {tuple(target.shape)}; the weights come from a different architecture")
            target.data.copy_(tensor.to(device=target.device, dtype=target.dtype))
            seen.add(name)
        if strict:
            missing = [k for k in dict(self.model.named_parameters()) if k not in seen]
            if missing:
                raise PipelineError(f"load_weights: {len(missing)} parameters were not given (first: {missing[0]})")
        return len(seen)

    # ------------------------------------------------------------------------------------------
    def _generation_config(self):
        # Sampling happens in SeededRowSampler; generate itself decodes greedily over its output. Neutral
        # values are set explicitly so a checkpoint's generation_config.json cannot change them.
        return HFGenerationConfig(max_new_tokens=self.config.max_new_tokens, do_sample=False, num_beams=1,
                                  temperature=1.0, top_p=1.0, top_k=None, repetition_penalty=1.0,
                                  pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)

    def _run_batch(self, prompt_ids: list[list[int]], seeds: list[int],
                   adapter_names: list[str] | None = None) -> list[list[int]]:
        device = next(self.model.parameters()).device
        width = max(len(ids) for ids in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):  # left padding: every prompt ends at the right edge
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids):] = 1
        processors = LogitsProcessorList()
        if not self.config.greedy:
            processors.append(SeededRowSampler(seeds, self.config.temperature, self.config.top_p))
        extra = {} if adapter_names is None else {"adapter_names": adapter_names}  # peft mixed-adapter batch
        out = self.model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                  generation_config=self._generation_config(), logits_processor=processors, **extra)
        return [row[width:].tolist() for row in out.cpu()]

    def _finish(self, new_ids: list[int]) -> tuple[str, tuple[int, ...]]:
        return decode_response(self.tokenizer, new_ids)

    def generate(self, prompts: Sequence) -> list[GenerationRow]:
        """n samples per prompt with the current dense weights; rows ordered by prompt, then sample index."""
        return self._generate(prompts, [BASE_ADAPTER if self._peft is not None else None])[0]

    def generate_adapters(self, prompts: Sequence, adapters: Sequence[AdapterRef]) -> list[list[GenerationRow]]:
        """The same prompts under several adapters, mixed in shared batches (peft's `adapter_names`). Per-sample
        seeds do not depend on the adapter, so each adapter's rows equal what `generate` gives with that adapter
        merged into θ0."""
        if not self._dense.is_base:
            raise RuntimeError("adapters are served on θ0: load θ0 (a MergeRequest with zero weights) first")
        names = [adapter.name for adapter in adapters]
        for adapter in adapters:
            self._resident(adapter, keep=names)
        return self._generate(prompts, names)

    def _generate(self, prompts: Sequence, adapters: list[str | None]) -> list[list[GenerationRow]]:
        pairs = as_prompt_pairs(prompts)
        encoded = [policy_prompt_ids(self.tokenizer, text) for _, text in pairs]
        work = [(a, p, s, sample_seed(self.config.seed, pairs[p][0], s)) for a in range(len(adapters))
                for p in range(len(pairs)) for s in range(self.config.n)]
        # Similar prompt lengths share a batch (less padding); results are put back in order below.
        work.sort(key=lambda item: -len(encoded[item[1]]))
        results: dict[tuple[int, int, int], tuple[str, tuple[int, ...]]] = {}
        step = self.config.batch_size
        for start in tqdm(range(0, len(work), step), desc="generate", leave=False, disable=len(work) <= step):
            chunk = work[start:start + step]
            names = None if adapters == [None] else [adapters[a] for a, _, _, _ in chunk]  # peft mixed batch
            outputs = self._run_batch([encoded[p] for _, p, _, _ in chunk], [seed for *_, seed in chunk], names)
            for (a, p, s, _), new_ids in zip(chunk, outputs):
                results[(a, p, s)] = self._finish(new_ids)
        rows: list[list[GenerationRow]] = [[] for _ in adapters]
        for a, p, s, seed in sorted(work, key=lambda item: item[:3]):
            text, ids = results[(a, p, s)]
            rows[a].append(GenerationRow(pairs[p][0], pairs[p][1], text, len(encoded[p]), len(ids), s, seed, ids))
        return rows

    # -- the sweep's protocol: dense merges, adapters, the policy's module ------------------------------------
    def load_merge(self, request: MergeRequest) -> None:
        """Merge in place into the live module (under the adapters once it serves some); nothing is reloaded."""
        if self._dense.holds(request):
            return
        target = self.model.get_base_model() if self._peft is not None else self.model
        merge_into_model(target, self._dense.inputs(request), request.spec)
        self._dense.now(request)

    @contextlib.contextmanager
    def policy(self, adapter: AdapterRef | None = None) -> Iterator[PolicyHandle]:
        if adapter is None and self._peft is not None:
            with self.model.disable_adapter():
                yield PolicyHandle(self.model, self.tokenizer)
            return
        if adapter is not None:
            if not self._dense.is_base:
                raise RuntimeError("adapters are served on θ0: load θ0 first")
            self.model.set_adapter(self._resident(adapter, keep=[adapter.name]))
        yield PolicyHandle(self.model, self.tokenizer)

    def _resident(self, adapter: AdapterRef, keep: Sequence[str]) -> str:
        """The adapter's name in the peft model, loading it (and wrapping the model) on first use. Beyond
        `MAX_RESIDENT_ADAPTERS` the least recently used ones are unloaded, never one in `keep` (the call in
        progress) nor the active one."""
        from peft import PeftModel  # deferred: peft loads only once a LoRA soup is served

        if self._peft is None:
            self.model = PeftModel.from_pretrained(self.model, adapter.path, adapter_name=adapter.name).eval()
            self._peft = self.model
        elif adapter.name not in self.model.peft_config:
            self.model.load_adapter(adapter.path, adapter_name=adapter.name)
        self._recent.pop(adapter.name, None)
        self._recent[adapter.name] = None
        protected = set(keep) | {adapter.name}
        excess = len(self._recent) - MAX_RESIDENT_ADAPTERS
        for victim in [name for name in self._recent if name not in protected][:max(0, excess)]:
            if victim == self.model.active_adapter:
                self.model.set_adapter(adapter.name)
            self.model.delete_adapter(victim)
            del self._recent[victim]
        return adapter.name

    def idle(self) -> None:
        """The live module stays where it is (the sweep's metrics use it)."""

    def close(self) -> None:
        """Close the merge inputs; the model itself belongs to the caller."""
        self._dense.close()
