"""Generation settings, shared by both backends, validated from the `generation:` block of a config (its sampling
fields typed by sampling.py).

    generation:
      backend: auto            # auto | transformers | vllm
      temperature: 0.7         # 0 = greedy
      top_p: 0.9
      max_new_tokens: 64
      n: 4                     # samples per prompt
      seed: 0
      batch_size: 16           # sequences per forward pass (transformers backend)
      device: auto
      dtype: auto
      vllm: {gpu_memory_utilization: 0.5, max_model_len: 2048, enable_lora: false, max_loras: 4}
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError

from lines.config_errors import describe_validation_error
from lines.schema import StrictModel

from ..errors import PipelineError
from .sampling import MaxNewTokens, SamplesPerPrompt, Temperature, TopP


class VLLMSettings(StrictModel):
    """The vLLM engine (checked against what the installed vLLM accepts by `vllm_support.check_vllm_settings`)."""

    # GPU: the share of the device's memory the engine takes (weights, activations, KV cache).
    gpu_memory_utilization: float = Field(0.5, gt=0, le=1)
    # The KV cache's size. The CPU build needs one (its default, a share of the node's memory, fails at start):
    # null means 512 MiB there, and gpu_memory_utilization on a GPU.
    kv_cache_memory_mb: int | None = Field(None, ge=1)
    max_model_len: int | None = Field(None, gt=0)
    tensor_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool = False
    enable_lora: bool = False
    max_lora_rank: int = Field(16, ge=1)   # one of the ranks vLLM serves (1, 8, 16, 32, 64, 128, 256, 320, 512)
    max_loras: int = Field(4, ge=1)        # soup adapters served together: the sweep's points per generate call
    # Where workers hold the inputs of dense merges (see worker_merge.py): auto = the device when θ0 and every
    # policy fit beside the engine, else pinned host memory when they fit there, else disk; on the CPU, disk.
    merge_inputs: Literal["auto", "disk", "host", "device"] = "auto"
    # GPU: offload the engine's weights and drop its KV cache while reward models score (vLLM sleep level 1).
    sleep_while_scoring: bool = False


class GenerationConfig(StrictModel):
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    max_new_tokens: MaxNewTokens = 64
    n: SamplesPerPrompt = 1
    seed: int = 0
    batch_size: int = Field(16, ge=1)
    device: str = "auto"  # auto (this process's GPU, else the CPU), cpu, cuda:N
    dtype: Literal["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "float64"] = "auto"
    vllm: VLLMSettings = Field(default_factory=VLLMSettings)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def sampling(self) -> dict:
        """The settings samples depend on (batch sizes and memory settings only change speed)."""
        return self.model_dump(include={"temperature", "top_p", "max_new_tokens", "n", "seed"})


def parse_generation_config(config: dict | GenerationConfig | None) -> GenerationConfig:
    if isinstance(config, GenerationConfig):
        return config
    try:
        return GenerationConfig.model_validate(config or {})
    except ValidationError as err:
        raise PipelineError(describe_validation_error(err, "generation", setting="generation setting")) from None

