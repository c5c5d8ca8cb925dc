"""lines: streaming merges of LLM policies (rewarded soups) with LiNeS layer scaling."""
from .errors import LinesError
from .layer_map import LayerMap
from .merge import merge, merge_into_model
from .recipe import MergeSpec, Recipe, load_recipe, parse_recipe
from .schedule import LinesSchedule
from .task_vectors import MergeInputs

__all__ = ["LinesError", "LayerMap", "LinesSchedule", "MergeInputs", "MergeSpec", "Recipe", "load_recipe",
           "parse_recipe", "merge", "merge_into_model"]
