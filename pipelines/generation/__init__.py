"""Generation backends with one interface: `generate(prompts) -> list[GenerationRow]`, `load_weights(named)`.

    from pipelines.generation import make_generator
    generator = make_generator(model_path=base_dir, config=cfg["generation"])
    generator.load_weights(merged_state)      # in place, between sweep points
    rows = generator.generate(prompt_set.evaluation)
"""
from .backend_choice import choose_backend, make_generator
from .config import GenerationConfig, VLLMSettings, parse_generation_config, sample_seed
from .rows import GenerationRow
from .transformers_backend import TransformersGenerator
from .vllm_backend import LoraAdapter, VLLMApi, VLLMGenerator

__all__ = ["choose_backend", "make_generator", "GenerationConfig", "VLLMSettings", "parse_generation_config",
           "sample_seed", "GenerationRow", "TransformersGenerator", "LoraAdapter", "VLLMApi", "VLLMGenerator"]
