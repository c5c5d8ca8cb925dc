"""Generation backends behind one protocol (protocol.py): stated capabilities, dense merges written in place
from a merge specification, LoRA soups served as adapters, the policy's module for metrics.

    from pipelines.generation import make_generator
    generator = make_generator(model_path=base_dir, config=cfg.generation)
    generator.load_merge(MergeRequest(base, policies, spec, key))   # in place, between sweep points
    rows = generator.generate(prompt_set.evaluation)
"""
from .backend_choice import choose_backend, make_generator
from .config import GenerationConfig, VLLMSettings, parse_generation_config, sample_seed
from .protocol import AdapterRef, Capabilities, GenerationBackend, MergeRequest
from .rows import GenerationRow
from .transformers_backend import TransformersGenerator
from .vllm_backend import VLLMApi, VLLMGenerator

__all__ = ["choose_backend", "make_generator", "GenerationConfig", "VLLMSettings", "parse_generation_config",
           "sample_seed", "AdapterRef", "Capabilities", "GenerationBackend", "MergeRequest", "GenerationRow",
           "TransformersGenerator", "VLLMApi", "VLLMGenerator"]
