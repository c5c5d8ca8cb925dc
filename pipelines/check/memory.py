"""Estimates of GPU memory per process, from a model's config.json alone (no weights read or downloaded).

Parameter counts are exact: the model is built from its config on PyTorch's `meta` device (shapes, no storage) and
its tensors counted. Memory is an estimate from these formulas, per process (one GPU each), in bytes:

- training, ZeRO's accounting of mixed-precision Adam (Rajbhandari et al. 2020): 16 bytes per trained parameter
  (2 for the half-precision copy, 2 for its gradient, 12 for the fp32 master copy and Adam's two moments; plain
  data-parallel training in fp32 weights, fp32 gradients and Adam also makes 16), split over N processes as
  DDP 16·T, ZeRO-1 4·T + 12·T/N, ZeRO-2 2·T + 14·T/N, ZeRO-3 16·T/N; offloading the optimizer to the CPU removes
  the 12·T/N part, offloading parameters (ZeRO-3) the rest. A frozen LoRA base adds F·b (b: bytes of its load
  dtype; ZeRO-3 divides by N) and a frozen reference model P·b;
- inference: P·b for each copy of a model that is held;
- not included: activations (they grow with batch × length; gradient checkpointing keeps them small), the KV cache
  outside vLLM, CUDA context and allocator slack (often 1–3 GB).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

GB = 1e9
BYTES = {"float32": 4, "fp32": 4, "bfloat16": 2, "bf16": 2, "float16": 2, "fp16": 2, "float64": 8}


def local_config(path_or_id: str) -> dict | None:
    """config.json of a local checkpoint, or of a hub id from the hub cache; None when it is not on this machine."""
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        file = local / "config.json"
        return json.loads(file.read_text()) if file.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache  # optional: only for hub ids

        cached = try_to_load_from_cache(path_or_id, "config.json")
    except Exception:  # an id the cache cannot look up is simply not here
        return None
    return json.loads(Path(cached).read_text()) if isinstance(cached, str) else None


@dataclass(frozen=True)
class ModelShape:
    parameters: int                          # every parameter (tied weights once)
    linear: list[tuple[str, int, int]]       # (module name, in_features, out_features) of every linear layer
    output_layer: str | None                 # the output projection's name (peft's all-linear skips it)

    def lora_parameters(self, rank: int, targets: list[str] | str) -> int:
        """r·(in + out) summed over the adapted linear layers: peft's `all-linear` (every linear but the output
        layer) or the layers whose name ends with one of `targets`."""
        def adapted(name: str) -> bool:
            if targets == "all-linear":
                return name != self.output_layer
            return any(name == t or name.endswith("." + t) for t in targets)

        return sum(rank * (fan_in + fan_out) for name, fan_in, fan_out in self.linear if adapted(name))


def model_shape(config: dict, head: str = "causal_lm") -> ModelShape | None:
    """Shapes of the model `config` describes (`head`: causal_lm or seq_cls), built on the meta device; None for an
    architecture transformers cannot build from its config alone (custom code)."""
    import torch  # heavy: only to build a model's shapes on the meta device
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification  # heavy, as above

    try:
        fields = {k: v for k, v in config.items() if k not in ("model_type", "auto_map")}
        model_config = AutoConfig.for_model(config["model_type"], **fields)
        with torch.device("meta"):
            builder = AutoModelForCausalLM if head == "causal_lm" else AutoModelForSequenceClassification
            model = builder.from_config(model_config)
    except Exception:  # unknown model_type, custom architecture, a config transformers refuses
        return None
    seen, parameters = set(), 0
    for tensor in model.parameters():  # tied tensors appear once
        if id(tensor) not in seen:
            seen.add(id(tensor))
            parameters += tensor.numel()
    from transformers.pytorch_utils import Conv1D  # heavy, as above

    linear = [(name, m.in_features, m.out_features) for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear)]
    linear += [(name, m.weight.shape[0], m.weight.shape[1]) for name, m in model.named_modules()
               if isinstance(m, Conv1D)]  # GPT-2's linear layers: weight (in, out)
    output = model.get_output_embeddings() if head == "causal_lm" else None
    output_layer = next((name for name, m in model.named_modules() if m is output), None)
    return ModelShape(parameters, linear, output_layer)


def training_bytes(trained: int, frozen: int, frozen_bytes: int, reference: int, reference_bytes: int,
                   processes: int, zero_stage: int, offload_optimizer: bool = False, offload_params: bool = False
                   ) -> float:
    """Per-process bytes of a training stage (formula in the module docstring)."""
    n = max(processes, 1)
    optimizer = 0.0 if offload_optimizer else 12 * trained
    if zero_stage == 3:
        states = (0.0 if offload_params else 4 * trained) / n + optimizer / n
        shard = 0 if offload_params else 1
        return states + shard * (frozen * frozen_bytes + reference * reference_bytes) / n
    if zero_stage == 2:
        states = 2 * trained + (2 * trained + optimizer) / n
    elif zero_stage == 1:
        states = 4 * trained + optimizer / n
    else:
        states = 4 * trained + optimizer
    return states + frozen * frozen_bytes + reference * reference_bytes


def gigabytes(n_bytes: float) -> str:
    """GB with one decimal; small amounts (the demo's models) in MB."""
    return f"{n_bytes / GB:.1f} GB" if n_bytes >= 0.1 * GB else f"{n_bytes / 1e6:.1f} MB"
