"""`lines export-mergekit RECIPE`: the mergekit config that reproduces a recipe's merge, LiNeS included.

LiNeS multiplies each tensor's merged update by λ(ℓ), and mergekit's per-layer gradients evaluate a value at depth
ℓ/(L−1) in block ℓ: so a LiNeS recipe is a mergekit config whose values carry λ(ℓ):

- methods linear in the task vectors (linear, task_arithmetic, mergekit_task_arithmetic): mergekit's task_arithmetic
  with weight c_i·λ(ℓ) per model (c the method's coefficients, θ0 + Σ_i c_i·λ(ℓ)·τ_i);
- mergekit_linear: mergekit's linear, unnormalised, θ0 weighted 1 − λ(ℓ) and model i λ(ℓ)·w_i (/ Σw);
- mergekit_ties / mergekit_dare_ties / mergekit_dare_linear: the same mergekit method with lambda·λ(ℓ);
- mergekit_slerp only without LiNeS (mergekit's slerp has no scale of the update).

Every value is written as the shortest setting that reproduces it on every tensor of θ0 — a number, a two-anchor
gradient [λ(0)·c, λ(L−1)·c], one anchor per block, and `{filter: NAME, value: ...}` entries for the tensors outside the
blocks (mergekit evaluates those at t = 0, LiNeS gives them α) — and is checked by evaluating it back on every tensor
name as mergekit would. This project's own ties, dare_*, consensus and slerp have no mergekit equivalent (see
lines/mergekit_methods.py) and are refused, naming the mergekit_* method to use instead.
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import yaml

from .engine import TensorMerger
from .errors import LinesError
from .layer_map import BLOCK
from .recipe import Recipe
from .recipe_file import load_recipe
from .task_vectors import MergeInputs
from .tensor_values import Condition, depth, evaluate, evaluate_value

LINEAR = ("linear", "task_arithmetic", "mergekit_task_arithmetic")
OWN = ("ties", "dare_linear", "dare_ties", "slerp")  # this project's methods with a mergekit namesake
GTA = {"mergekit_ties": "ties", "mergekit_dare_ties": "dare_ties", "mergekit_dare_linear": "dare_linear"}
DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float64: "float64"}


def export_mergekit(recipe: Recipe | str | Path, allow_pickle: bool = False) -> tuple[dict, list[str]]:
    """(mergekit config, notes) for `recipe`. Opens the checkpoints for θ0's tensor names and layer count (and
    resolves `alpha: auto`, a pass over the inputs unless the method has a closed form)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    spec = recipe.spec()
    if recipe.output != "dense":
        raise LinesError("export-mergekit: output: adapter has no mergekit counterpart; export the dense recipe")
    with MergeInputs(recipe.base_model, [m.model for m in recipe.models], allow_pickle) as inputs:
        adapters = [*inputs.adapters, *inputs.peft_merged]
        if adapters:
            raise LinesError(f"export-mergekit: {adapters[0].path} is a PEFT adapter; give the policies as full "
                             "checkpoints (mergekit reads LoRA only as model+adapter pairs it merges itself)")
        merger = TensorMerger(spec, inputs)
        resolved = merger.resolve_lines(progress=False)
        names = [n for n in inputs.names if inputs.base.info(n).dtype.is_floating_point]
        ts = {n: depth(inputs.roles[n], inputs.num_layers) for n in names}
        scale = {n: 1.0 if resolved is None else resolved.schedule.scale(inputs.roles[n]) for n in names}
        settings = {n: merger.settings(n) for n in names}
        method = merger.method
        # Exact values for the config: from each tensor's spec in Python floats (fp64), not the compute-dtype tensors.
        weights = {n: list(settings[n].spec.weights) for n in names}
        params = {n: settings[n].params for n in names}
        emit = _Emitter(names, ts, inputs)
        paths = [m.model for m in recipe.models]
        notes: list[str] = []
        if spec.method in LINEAR:
            per_path: dict[str, dict[str, float]] = {}
            for i, path in enumerate(paths):
                if path == recipe.base_model:
                    continue  # τ = 0: nothing to add, and mergekit would take it for the base
                target = per_path.setdefault(path, {n: 0.0 for n in names})
                for n in names:
                    coefficients = method.linear_coefficients(torch.tensor(weights[n], dtype=torch.float64), params[n])
                    target[n] += scale[n] * float(coefficients[i])
            config = {"merge_method": "task_arithmetic", "base_model": recipe.base_model,
                      "models": [{"model": p, "parameters": {"weight": emit(v, f"weight of {p}")}}
                                 for p, v in per_path.items()],
                      "parameters": {"normalize": False}}
        elif spec.method == "mergekit_linear":
            per_path = {recipe.base_model: {n: 1.0 - scale[n] for n in names}}
            for i, path in enumerate(paths):
                target = per_path.setdefault(path, {n: 0.0 for n in names})
                for n in names:
                    divisor = math.fsum(weights[n]) if params[n]["normalize"] else 1.0
                    target[n] += scale[n] * weights[n][i] / divisor
            config = {"merge_method": "linear", "base_model": recipe.base_model,
                      "models": [{"model": p, "parameters": {"weight": emit(v, f"weight of {p}")}}
                                 for p, v in per_path.items()],
                      "parameters": {"normalize": False}}
        elif spec.method in GTA:
            if recipe.base_model in paths or len(set(paths)) != len(paths):
                raise LinesError(f"export-mergekit: {spec.method} with θ0 or one model listed twice among the policies "
                                 "has no mergekit counterpart (mergekit takes θ0 for the base and merges each model "
                                 "once)")
            models = []
            for i, path in enumerate(paths):
                parameters = {"weight": emit({n: weights[n][i] for n in names}, f"weight of {path}"),
                              "density": emit({n: params[n]["density"][i] for n in names},
                                              f"density of {path}")}
                models.append({"model": path, "parameters": parameters})
            config = {"merge_method": GTA[spec.method], "base_model": recipe.base_model, "models": models,
                      "parameters": {
                          "normalize": emit({n: params[n]["normalize"] for n in names}, "normalize"),
                          "rescale": emit({n: params[n]["rescale"] for n in names}, "rescale"),
                          "lambda": emit({n: params[n]["lambda_"] * scale[n] for n in names}, "lambda")}}
            if spec.method != "mergekit_ties":
                notes.append("DARE's drop masks are random: mergekit draws its own (seed them with mergekit-yaml "
                             "--random-seed), so its merge follows the same law as this recipe's, not the same draw")
        elif spec.method == "mergekit_slerp" and all(scale[n] == 1.0 for n in names):
            config = {"merge_method": "slerp", "base_model": recipe.base_model,
                      "models": [{"model": recipe.base_model}, {"model": paths[0]}],
                      "parameters": {"t": emit({n: params[n]["t"] for n in names}, "t")}}
        elif spec.method == "mergekit_slerp":
            raise LinesError("export-mergekit: mergekit's slerp has no scale for the merged update, so LiNeS on top of it "
                             "has no mergekit counterpart; export the recipe without its lines block")
        else:
            instead = (f"use method mergekit_{spec.method} for mergekit's semantics" if spec.method in OWN
                       else "mergekit has no such method")
            raise LinesError(f"export-mergekit: method {spec.method} follows this project's semantics, which no mergekit "
                             f"method shares (docs/merging.md: mergekit configs); {instead}, or linear / task_arithmetic")
        config["dtype"] = "float64" if spec.compute_dtype == "float64" else "float32"
        config["out_dtype"] = recipe.dtype or _common_dtype(inputs, names)
    return config, notes


class _Dumper(yaml.SafeDumper):
    """Gradients on one line, as mergekit writes them ([0.3, 0.9])."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=all(isinstance(v, (int, float)) for v in data)))


def to_yaml(config: dict, header: list[str]) -> str:
    return "".join(f"# {line}\n" for line in header) + yaml.dump(config, Dumper=_Dumper, sort_keys=False)


def _common_dtype(inputs: MergeInputs, names: list[str]) -> str:
    dtypes = Counter(inputs.base.info(n).dtype for n in names)
    if len(dtypes) > 1:
        raise LinesError("export-mergekit: θ0's tensors have several dtypes and mergekit writes one; set dtype in the "
                         "recipe")
    return DTYPE_NAMES[next(iter(dtypes))]


class _Emitter:
    """The shortest mergekit setting that gives each tensor its value, checked by evaluating it back."""

    def __init__(self, names: list[str], ts: dict[str, float], inputs: MergeInputs):
        self.names, self.ts = names, ts
        self.num_layers = inputs.num_layers
        self.blocks: dict[str, list[str | None]] = {}  # name inside a block -> tensor name per layer
        self.outside: list[str] = []
        for name in names:
            role = inputs.roles[name]
            if role.kind == BLOCK:
                match = inputs.layer_map.spec.block.search(name)
                inner = name[match.end():]
                self.blocks.setdefault(inner, [None] * self.num_layers)[role.layer] = name
            else:
                self.outside.append(name)

    def __call__(self, values: dict[str, Any], what: str) -> Any:
        if len(set(values.values())) == 1:
            return _plain(next(iter(values.values())))
        sequences = {}
        for inner, per_layer in self.blocks.items():
            if None in per_layer:
                raise LinesError(f"export-mergekit: '{inner}' is not in every block; its {what} cannot be a gradient")
            sequences[inner] = tuple(values[n] for n in per_layer)
        fallback = Counter(sequences.values()).most_common(1)[0][0] if sequences else (values[self.outside[0]],)
        conditions = [Condition(filter=inner, value=self._gradient(seq)) for inner, seq in sequences.items()
                      if seq != fallback]
        catch_all = self._gradient(fallback)
        at_zero = evaluate_value(catch_all, 0.0)
        conditions = [Condition(filter=n, value=_plain(values[n])) for n in self.outside
                      if not _close(values[n], at_zero)] + conditions + [Condition(value=catch_all)]
        for name in self.names:  # evaluated back exactly as mergekit will
            got = evaluate(conditions, name, self.ts[name])
            if got is None or not _close(got, values[name]):
                raise LinesError(f"export-mergekit: no mergekit setting of {what} reproduces tensor {name!r} "
                                 f"(a filter matches another tensor's name); this recipe cannot be exported")
        if len(conditions) == 1:
            return catch_all
        return [{"value": c.value} if c.filter is None else {"filter": c.filter, "value": c.value}
                for c in conditions]

    def _gradient(self, sequence: tuple) -> Any:
        """A value per block: a number, two anchors when it is affine in depth (LiNeS), else one anchor per block."""
        if len(set(sequence)) == 1:
            return _plain(sequence[0])
        if isinstance(sequence[0], bool):
            return list(sequence)
        last = len(sequence) - 1
        anchors = [_plain(sequence[0]), _plain(sequence[-1])]
        if all(_close(evaluate_value(anchors, layer / last), v) for layer, v in enumerate(sequence)):
            return anchors
        return [_plain(v) for v in sequence]


def _plain(value: Any) -> Any:
    """Python floats and bools for YAML (no numpy or torch scalars)."""
    return value if isinstance(value, bool) else float(value)


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
