"""lines: streaming merges of LLM policies (rewarded soups) with LiNeS layer scaling."""
from .errors import LinesError
from .layer_map import LayerMap
from .diagnostics import layer_diagnostics
from .merge import iter_merged_tensors, merge, merge_into_model
from .method_registry import MergeMethod, register_method, unregister_method
from .recipe import MergeSpec, Recipe, canonical_merge, load_recipe, parse_recipe
from .schedule import LinesSchedule
from .task_vectors import MergeInputs

__all__ = ["LinesError", "LayerMap", "LinesSchedule", "MergeInputs", "MergeSpec", "Recipe", "load_recipe",
           "parse_recipe", "canonical_merge", "MergeMethod", "register_method",
           "unregister_method", "merge", "merge_into_model", "iter_merged_tensors", "layer_diagnostics"]
