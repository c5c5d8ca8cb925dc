"""A recipe read from a YAML file: this project's recipe, or a mergekit config (it has `merge_method`) read as the
recipe that merges as it does."""
from __future__ import annotations

from pathlib import Path

from .errors import LinesError
from .mergekit_config import is_mergekit_config, recipe_from_mergekit
from .recipe import Recipe, parse_recipe
from .user_files import read_yaml_mapping


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file, or a mergekit config (it has `merge_method`) read as the recipe that merges as it does."""
    data = read_yaml_mapping(path, LinesError, "recipe")
    if is_mergekit_config(data):
        return recipe_from_mergekit(data, str(path))
    return parse_recipe(data, str(path))
