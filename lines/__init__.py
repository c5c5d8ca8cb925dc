"""lines: streaming merges of LLM policies (rewarded soups) with LiNeS layer scaling."""
# The merge methods register themselves into lines.method_registry: this project's first, then mergekit's namesakes
# (error messages list them in that order). Every `import lines.<module>` runs this file first, so no lookup can
# find the registry empty.
from . import native_methods  # noqa: F401  registers this project's methods
from . import mergekit_methods  # noqa: F401  then mergekit's namesakes
from .errors import LinesError
from .layer_map import LayerMap
from .diagnostics import layer_diagnostics
from .merge import iter_merged_tensors, merge, merge_into_model
from .method_registry import MergeMethod, register_method, unregister_method
from .recipe import MergeSpec, Recipe, canonical_merge, parse_recipe
from .recipe_file import load_recipe
from .schedule import LinesSchedule
from .task_vectors import MergeInputs

__all__ = ["LinesError", "LayerMap", "LinesSchedule", "MergeInputs", "MergeSpec", "Recipe", "load_recipe",
           "parse_recipe", "canonical_merge", "MergeMethod", "register_method",
           "unregister_method", "merge", "merge_into_model", "iter_merged_tensors", "layer_diagnostics"]
