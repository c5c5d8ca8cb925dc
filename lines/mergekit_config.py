"""mergekit configs read as they are: `lines merge mergekit.yaml OUT` gives what `mergekit-yaml` gives.

A config is a mergekit config when it has `merge_method`. Its keys map onto a recipe:

    merge_method          linear | task_arithmetic | ties | dare_linear | dare_ties | slerp, merged with mergekit's
                          semantics (the `mergekit_*` methods of lines/mergekit_methods.py; `linear` with constant
                          normalisation is this project's soup, which is the same maths)
    base_model            θ0
    models[].model        the policies (a local directory; θ0 itself when listed is the base, or, for linear, an
                          input whose task vector is zero)
    slices                the models as mergekit's README writes them, when that is a plain merge (plain_slices
                          below): every slice lists the same models with one layer_range, the slices cover θ0's
                          layers in order once; a slice's parameters come between its sources' and the top-level ones
    models[].parameters   weight, density: per model; a number, a per-layer gradient list or a list of
    parameters            {filter, value} conditions, evaluated per tensor exactly as mergekit does
                          (lines/tensor_values.py); the top-level `parameters` are the fallback for every model and
                          hold the method's own settings (normalize, rescale, lambda, int8_mask, t)
    dtype, out_dtype      mergekit computes in `dtype` and writes `out_dtype` (default `dtype`); here the arithmetic is
                          fp32 (fp64 for dtype: float64) and the output dtype is out_dtype, else dtype, else θ0's
    tokenizer_source      base (or θ0's path): θ0's tokenizer files are copied, as mergekit does for `base`
    chat_template         a template name mergekit knows (read from the mergekit package) or the template text, set in
                          the merged tokenizer (chat_template.jinja, as mergekit's output holds it)
    lines                 this project's addition: LiNeS on top of the merged update (a `lines:` recipe block)

Anything else (slices that restack layers, modules, another method, a tokenizer union, a parameter the method does
not have) is one error naming the key; mergekit ignores unknown parameters silently, a typo here is caught.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError

from .config_errors import first_error
from .errors import LinesError
from .layer_map import LayerMap
from .recipe import MergeSpec, ModelEntry, Recipe
from .tensor_values import Condition, VaryingValue, evaluate_value

REQUIRED = object()
SHARED, INPUT, NON_BASE = "shared", "input", "non_base"  # mergekit's ParameterScope
TOP_LEVEL = ("merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype", "tokenizer_source",
             "tokenizer", "chat_template", "lines")
TOKENIZER_CONFIG = "tokenizer_config.json"
DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32", "float64": "float64"}


@dataclass(frozen=True)
class Param:
    """A parameter of a mergekit method, as mergekit 0.1.5 declares it, and where it goes here."""

    scope: str
    type: type
    default: Any
    target: str | None  # this project's parameter name; None: accepted and ignored (no effect on the result)


def _gta(normalize: bool, rescale: bool, sparsified: bool) -> dict[str, Param]:
    return {"weight": Param(NON_BASE, float, REQUIRED, "weights"),
            "density": Param(NON_BASE, float, 1.0, "density" if sparsified else None),
            "normalize": Param(SHARED, bool, normalize, "normalize"),
            "rescale": Param(SHARED, bool, rescale, "rescale" if sparsified else None),
            "lambda": Param(SHARED, float, 1.0, "lambda_"),
            "int8_mask": Param(SHARED, bool, False, None)}  # the mask's storage type only


# mergekit method -> (this project's method, its parameters, whether θ0 is an input with a weight)
METHODS: dict[str, tuple[str, dict[str, Param], bool]] = {
    "linear": ("mergekit_linear", {"weight": Param(INPUT, float, REQUIRED, "weights"),
                                   "normalize": Param(SHARED, bool, True, "normalize")}, True),
    "task_arithmetic": ("mergekit_task_arithmetic", _gta(False, False, False), False),
    "ties": ("mergekit_ties", _gta(True, False, True), False),
    "dare_ties": ("mergekit_dare_ties", _gta(False, True, True), False),
    "dare_linear": ("mergekit_dare_linear", _gta(False, True, True), False),
    "slerp": ("mergekit_slerp", {"t": Param(SHARED, float, REQUIRED, "t")}, False),
}


class MergekitRecipe(Recipe):
    """A recipe read from a mergekit config: values that vary by tensor, and the config itself for the model card."""

    varying: dict[str, VaryingValue] = Field(default_factory=dict)
    mergekit: dict = Field(default_factory=dict)
    chat_template: str | None = None  # the template text to set in the merged tokenizer

    def spec(self) -> MergeSpec:
        return MergeSpec(method=self.method, weights=[m.weight for m in self.models], parameters=self.parameters,
                         lines=self.lines, seed=self.seed, compute_dtype=self.compute_dtype, varying=self.varying)


def is_mergekit_config(data: dict) -> bool:
    return "merge_method" in data


class _Reader:
    def __init__(self, data: dict, source: str):
        self.data, self.source = data, source

    def error(self, key: str, message: str) -> LinesError:
        return LinesError(f"{self.source}: field '{key}': {message}")

    def parameters(self, key: str, given: Any, method_name: str, params: dict) -> dict:
        """A `parameters` mapping (of a model, a slice or the whole merge) whose every name the method has."""
        given = given or {}
        if not isinstance(given, dict):
            raise self.error(key, "a mapping of parameter names to values")
        for name in given:
            if name not in params:
                raise self.error(f"{key}.{name}", f"mergekit's {method_name} has no parameter '{name}' (it has "
                                                  f"{', '.join(params)}); remove it or check its spelling")
        return given

    # -- values ------------------------------------------------------------------------------------------------
    def scalar(self, key: str, value: Any, kind: type) -> Any:
        """One value validated as mergekit validates it (pydantic, lax: '1e-3' is a number, as YAML leaves it)."""
        if isinstance(value, (dict, list)) or value is None:
            raise self.error(key, f"expected a {kind.__name__}, got {value!r}")
        try:
            return TypeAdapter(kind).validate_python(value)
        except ValidationError as exc:
            raise self.error(key, f"expected a {kind.__name__}, got {value!r} ({first_error(exc)})") from None

    def value(self, key: str, value: Any, kind: type) -> Any:
        """A scalar or a gradient (a non-empty list of scalars)."""
        if isinstance(value, list):
            if not value:
                raise self.error(key, "an empty list gives no value; give a number or a gradient of numbers")
            if any(isinstance(v, (dict, list)) for v in value):
                raise self.error(key, "a gradient is a list of numbers; filters are {filter, value} entries of a "
                                      "list of their own")
            return [self.scalar(f"{key}.{i}", v, kind) for i, v in enumerate(value)]
        return self.scalar(key, value, kind)

    def conditions(self, key: str, setting: Any, kind: type) -> list[Condition]:
        """A mergekit parameter setting as conditions: a value, a gradient, or {filter, value} entries."""
        entries = [setting] if isinstance(setting, dict) else setting
        if isinstance(entries, list) and entries and all(isinstance(e, dict) for e in entries):
            out = []
            for i, entry in enumerate(entries):
                where = f"{key}.{i}" if isinstance(setting, list) else key
                unknown = sorted(set(entry) - {"filter", "value"})
                if unknown or "value" not in entry:
                    raise self.error(f"{where}.{unknown[0]}" if unknown else where,
                                     "a conditional value is {filter: NAME_PART, value: ...}; "
                                     + (f"'{unknown[0]}' is not one of its keys" if unknown else "add its value"))
                name_filter = entry.get("filter")
                if name_filter is not None and not isinstance(name_filter, str):
                    raise self.error(f"{where}.filter", "a filter is part of a tensor name, e.g. self_attn")
                out.append(Condition(filter=name_filter, value=self.value(f"{where}.value", entry["value"], kind)))
            return out
        return [Condition(value=self.value(key, setting, kind))]

    def slot(self, sources: list[tuple[str, Any]], param: Param, kind_name: str) -> tuple[Any, VaryingValue | None]:
        """(static value, varying value or None) of one parameter from its settings, highest precedence first,
        then its default: the chain mergekit's resolve_parameter walks, as one list of conditions."""
        conditions: list[Condition] = []
        for key, setting in sources:
            conditions += self.conditions(key, setting, param.type)
        unconditional = any(c.filter in (None, "*") for c in conditions)
        if not unconditional and param.default is not REQUIRED:
            conditions.append(Condition(value=param.default))
            unconditional = True
        if not conditions:
            raise self.error(kind_name, "is required by mergekit's "
                                        f"{self.data['merge_method']}; add it to that model's parameters or to the "
                                        "top-level parameters")
        first = conditions[0]
        if first.filter in (None, "*") and not isinstance(first.value, list):
            return first.value, None
        # Where no condition applies the static value is not used (required) or is the default appended above.
        static = evaluate_value(first.value, 0.0)
        return static, VaryingValue(conditions=conditions, required=not unconditional)


def _model_ref(reader: _Reader, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise reader.error(key, "give the model as a local checkpoint directory (a string)")
    if "+" in value:
        raise reader.error(key, f"'{value}' is mergekit's model+LoRA syntax; give the adapter directory itself as "
                                "a model (lines reads PEFT adapters on θ0 exactly)")
    return value


def recipe_from_mergekit(data: dict, source: str = "config") -> MergekitRecipe:
    """The recipe that merges as the mergekit config `data` does (with LiNeS on top when it has a `lines:` block)."""
    reader = _Reader(data, source)
    for key in data:
        if key == "modules":
            raise reader.error(key, "mergekit's per-module layer slicing (frankenmerges) has no counterpart here: a "
                                    "merge keeps θ0's layers; list the models under `models:`")
        if key not in TOP_LEVEL:
            raise reader.error(key, f"is not a mergekit setting lines reads (it reads {', '.join(TOP_LEVEL)}); remove "
                                    "it or check its spelling")
    method_name = data["merge_method"]
    if method_name not in METHODS:
        raise reader.error("merge_method", f"mergekit's '{method_name}' has no exact counterpart here; the methods "
                                           f"both tools share are {', '.join(METHODS)}")
    target, params, base_has_weight = METHODS[method_name]
    base = data.get("base_model")
    if base is not None:
        base = _model_ref(reader, "base_model", base)
    if "slices" in data:
        if data.get("models") is not None:
            raise reader.error("slices", "mergekit takes the models under either `models:` or `slices:`, not both; "
                                         "remove one")
        entries, slice_params = plain_slices(reader, data, base)
    else:
        models = data.get("models")
        if not isinstance(models, list) or not models:
            raise reader.error("models", "list the models to merge, e.g. [{model: path, parameters: {weight: 0.5}}]")
        entries, slice_params = [(f"models.{i}", entry) for i, entry in enumerate(models)], None
    refs, model_params, wheres = [], [], []
    for where, entry in entries:
        if not isinstance(entry, dict) or "model" not in entry:
            raise reader.error(where, "each model is {model: PATH, parameters: {...}}")
        unknown = sorted(set(entry) - {"model", "parameters"})
        if unknown:
            raise reader.error(f"{where}.{unknown[0]}", "is not a model setting; a model has model and parameters")
        ref = _model_ref(reader, f"{where}.model", entry["model"])
        if ref in refs:
            raise reader.error(f"{where}.model", f"'{ref}' is listed twice; mergekit merges each input once")
        given = reader.parameters(f"{where}.parameters", entry.get("parameters"), method_name, params)
        for name in given:
            if params[name].scope == SHARED:
                raise reader.error(f"{where}.parameters.{name}",
                                   f"'{name}' is a setting of the whole merge, which mergekit reads from the top-level "
                                   "parameters only; move it there")
        refs.append(ref)
        model_params.append(given)
        wheres.append(where)
    shared = reader.parameters("parameters", data.get("parameters"), method_name, params)
    # A slice's own parameters come between its sources' and the top-level ones (mergekit's precedence).
    levels = ([slice_params] if slice_params is not None else []) + [("parameters", shared)]

    def chain(name: str) -> list[tuple[str, Any]]:
        return [(f"{key}.{name}", setting[name]) for key, setting in levels if name in setting]

    # θ0 and the policies, in mergekit's input order.
    if base_has_weight:  # linear: every input is averaged; θ0 too when base_model is given (under `models:` only)
        theta0 = base if base is not None else refs[0]
        inputs = list(zip(refs, model_params)) + ([(base, {})] if base is not None and base not in refs
                                                  and slice_params is None else [])
    else:
        if base is None:
            raise reader.error("base_model", f"mergekit's {method_name} merges task vectors from a base model; "
                                             "set base_model (θ0)")
        if slice_params is not None and base not in refs:
            raise reader.error("slices.0.sources", f"mergekit's {method_name} takes θ0 from the slices' sources; list "
                                                   "base_model among them, with the same layer_range")
        theta0 = base
        inputs = [(ref, p) for ref, p in zip(refs, model_params) if ref != base]
        if not inputs:
            raise reader.error("models", "no model besides base_model; add the policies to merge")
    if method_name == "slerp" and len(inputs) != 1:
        raise reader.error("models", f"mergekit's slerp interpolates base_model and one other model; got "
                                     f"{len(inputs)} besides the base")

    weights: list[float] = []
    parameters: dict[str, Any] = {}
    varying: dict[str, VaryingValue] = {}
    per_model: dict[str, list] = {}
    for name, param in params.items():
        if param.scope == SHARED:
            static, vary = reader.slot(chain(name), param, f"parameters.{name}")
            if param.target is None:
                continue
            parameters[param.target] = static
            if vary is not None:
                varying[param.target] = vary
            continue
        values = []
        for i, (ref, given) in enumerate(inputs):
            index = refs.index(ref) if ref in refs else None
            where = f"{wheres[index]}.parameters.{name}" if index is not None else f"parameters.{name}"
            if index is None and param.default is REQUIRED and name not in shared:
                raise reader.error("base_model", f"mergekit's {method_name} averages base_model with the models, so "
                                                 f"it needs a {name}: list it under models with parameters.{name}, "
                                                 f"or give a top-level parameters.{name}")
            static, vary = reader.slot(([(where, given[name])] if name in given else []) + chain(name), param, where)
            values.append(static)
            if vary is not None and param.target is not None:
                key = f"weights.{i}" if param.target == "weights" else f"{param.target}.{i}"
                varying[key] = vary
        if param.target == "weights":
            weights = values
        elif param.target is not None:
            per_model[param.target] = values
    parameters.update(per_model)
    if method_name == "linear" and "normalize" not in varying and parameters["normalize"]:
        target = "linear"  # Σ w_i θ_i / Σ w_i = θ0 + Σ w̄_i τ_i: this project's soup, with its fused pass

    lines = data.get("lines")
    if lines is not None and base is None:
        raise reader.error("lines", "LiNeS scales the merged update from θ0; set base_model")
    dtype, out_dtype = (_dtype(reader, key, data.get(key)) for key in ("dtype", "out_dtype"))
    _check_tokenizer(reader, data, theta0)
    recipe = {"base_model": theta0, "models": [ModelEntry(model=ref, weight=w) for (ref, _), w in zip(inputs, weights)]
              if weights else [ModelEntry(model=ref) for ref, _ in inputs],
              "method": target, "parameters": parameters, "lines": lines, "dtype": out_dtype or dtype,
              "compute_dtype": "float64" if dtype == "float64" else "float32", "varying": varying,
              "mergekit": data, "chat_template": _chat_template(reader, data.get("chat_template"), theta0)}
    try:
        return MergekitRecipe.model_validate(recipe)
    except ValidationError as exc:
        raise LinesError(f"{source}: {first_error(exc)}") from None


SLICE_KEYS = ("sources", "parameters", "base_model", "residual_weight")  # residual_weight: read, unused by mergekit


def plain_slices(reader: _Reader, data: dict, base: str | None) -> tuple[list[tuple[str, dict]], tuple[str, dict]]:
    """`slices:` that make a plain merge, as (key, {model, parameters}) entries and the slice parameters (key,
    mapping): every slice lists the same models with one `layer_range`, and the slices cover θ0's layers in order
    once. Anything else puts layers where θ0 has other ones (a frankenmerge): one error naming the key.

    Several slices merge as one only where nothing depends on them: mergekit spreads each gradient over every slice
    anew and reads each slice's own parameters, while here depth runs over the whole model."""
    slices = data["slices"]
    if not isinstance(slices, list) or not slices:
        raise reader.error("slices", "list the slices, each {sources: [{model: PATH, layer_range: [START, END]}]}")
    models: list[str] | None = None
    ranges: list[list[int]] = []
    for k, out_slice in enumerate(slices):
        if not isinstance(out_slice, dict) or not isinstance(out_slice.get("sources"), list) or \
                not out_slice["sources"]:
            raise reader.error(f"slices.{k}", "each slice is {sources: [{model: PATH, layer_range: [START, END]}]}")
        unknown = sorted(set(out_slice) - set(SLICE_KEYS))
        if unknown:
            raise reader.error(f"slices.{k}.{unknown[0]}",
                               f"is not a slice setting; a slice has {', '.join(SLICE_KEYS)}")
        if out_slice.get("base_model") not in (None, base):
            raise reader.error(f"slices.{k}.base_model", "a slice's own base model differs from base_model; a merge "
                                                        "here has one θ0: remove it or set base_model to it")
        layer_range, listed = None, []
        for j, src in enumerate(out_slice["sources"]):
            where = f"slices.{k}.sources.{j}"
            if not isinstance(src, dict) or "model" not in src or "layer_range" not in src:
                raise reader.error(where, "each source is {model: PATH, layer_range: [START, END]}")
            unknown = sorted(set(src) - {"model", "layer_range", "parameters"})
            if unknown:
                raise reader.error(f"{where}.{unknown[0]}", "is not a source setting; a source has model, layer_range "
                                                            "and parameters")
            given = src["layer_range"]
            if not isinstance(given, list) or len(given) != 2 or not all(type(v) is int for v in given) or \
                    not 0 <= given[0] < given[1]:
                raise reader.error(f"{where}.layer_range", f"{given!r} is not [START, END] with 0 <= START < END")
            if layer_range is None:
                layer_range = given
            elif given != layer_range:
                raise reader.error(f"{where}.layer_range",
                                   f"{given} differs from the slice's first source's {layer_range}: merging layers of "
                                   "different depths is a frankenmerge, which has no counterpart here (a merge keeps "
                                   "θ0's layers); give every source of a slice the same layer_range")
            listed.append(_model_ref(reader, f"{where}.model", src["model"]))
        if models is None:
            models = listed
        elif sorted(listed) != sorted(models):
            raise reader.error(f"slices.{k}.sources",
                               "lists other models than slice 0: layers taken from different models make a "
                               "frankenmerge, which has no counterpart here; list every model in every slice")
        ranges.append(layer_range)
    theta0 = base if base is not None else models[0]
    num_layers = _num_layers(reader, theta0)
    end = 0
    for k, (start, stop) in enumerate(ranges):
        if start != end:
            raise reader.error(f"slices.{k}.sources.0.layer_range",
                               f"starts at layer {start} where layer {end} comes next: slices that skip, repeat or "
                               "reorder layers make a frankenmerge, which has no counterpart here; the slices must "
                               f"cover θ0's {num_layers} layers in order, once")
        end = stop
    if end != num_layers:
        raise reader.error(f"slices.{len(ranges) - 1}.sources.0.layer_range",
                           f"the slices end at layer {end} but θ0 ({theta0}) has {num_layers}: a merge keeps θ0's "
                           f"layers; cover them all, e.g. one slice with layer_range [0, {num_layers}]")
    if len(slices) > 1:
        _check_slices_merge_as_one(reader, data, slices)
    first = slices[0]
    entries = [(f"slices.0.sources.{j}", {"model": src["model"], **({"parameters": src["parameters"]}
                                                                    if "parameters" in src else {})})
               for j, src in enumerate(first["sources"])]
    slice_params = reader.parameters("slices.0.parameters", first.get("parameters"), data["merge_method"],
                                     METHODS[data["merge_method"]][1])
    return entries, ("slices.0.parameters", slice_params)


def _check_slices_merge_as_one(reader: _Reader, data: dict, slices: list[dict]) -> None:
    """Several slices give the merge of one full slice when every slice has the same parameters (per model too) and
    no value is a gradient (mergekit restarts a gradient's depth in each slice)."""
    def per_model(out_slice: dict) -> dict:
        return {src["model"]: src.get("parameters") or {} for src in out_slice["sources"]}

    for k, out_slice in enumerate(slices[1:], start=1):
        if (out_slice.get("parameters") or {}) != (slices[0].get("parameters") or {}) or \
                per_model(out_slice) != per_model(slices[0]):
            raise reader.error(f"slices.{k}", "has other parameters than slice 0: mergekit reads each slice's own, "
                                              "which here (one setting per tensor name over the whole model) has no "
                                              "counterpart; give every slice the same parameters, or use one slice")
    settings = [("parameters", data.get("parameters") or {}),
                ("slices.0.parameters", slices[0].get("parameters") or {})]
    settings += [(f"slices.0.sources.{j}.parameters", src.get("parameters") or {})
                 for j, src in enumerate(slices[0]["sources"])]
    for where, mapping in settings:
        for name, setting in (mapping.items() if isinstance(mapping, dict) else ()):
            if _has_gradient(setting):
                raise reader.error(f"{where}.{name}",
                                   f"is a gradient, which mergekit spreads over each of the {len(slices)} slices anew "
                                   "(here depth runs over the whole model); give the slices as one, with "
                                   "layer_range [0, N]")


def _has_gradient(setting: Any) -> bool:
    if isinstance(setting, dict):
        return _has_gradient(setting.get("value"))
    if isinstance(setting, list):
        if setting and all(not isinstance(v, (dict, list)) for v in setting):
            return len(set(map(repr, setting))) > 1
        return any(_has_gradient(v) for v in setting)
    return False


def _num_layers(reader: _Reader, theta0: str) -> int:
    """θ0's number of decoder blocks, from its config.json (what the slices must cover)."""
    config_path = Path(theta0) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        return LayerMap.from_config(config, str(config_path)).num_layers
    except (OSError, ValueError, LinesError) as exc:
        raise reader.error("slices", f"the layer ranges are checked against θ0's layers, and {config_path} gives no "
                                     f"layer count ({exc}); set base_model to θ0's checkpoint directory") from None


def mergekit_chat_templates() -> Path | None:
    """The directory of the chat templates mergekit knows by name (<name>.jinja), found without importing mergekit;
    None when mergekit is not installed."""
    spec = importlib.util.find_spec("mergekit")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "_data" / "chat_templates"


def _chat_template(reader: _Reader, value: Any, theta0: str) -> str | None:
    """The template text `chat_template` asks for, as mergekit reads it: a short single-line value without `{` is the
    name of one of mergekit's templates, anything else is the template itself (at least 20 characters, with `{`)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise reader.error("chat_template", "give a template name mergekit knows (e.g. chatml) or the template text")
    if value == "auto":
        raise reader.error("chat_template", "'auto' makes mergekit pick the most common template among the inputs, "
                                            "ties broken by the order of an unordered set; name the template or give "
                                            "its text")
    if len(value) < 256 and "\n" not in value and "{" not in value:
        templates = mergekit_chat_templates()
        if templates is None:
            raise reader.error("chat_template", f"'{value}' names one of mergekit's templates, which are read from "
                                                "the mergekit package; install mergekit (the dev extra pins it) or "
                                                "give the template text")
        path = templates / f"{value}.jinja"
        if not path.is_file():
            known = sorted(p.stem for p in templates.glob("*.jinja"))
            raise reader.error("chat_template", f"'{value}' is not a template mergekit knows ({', '.join(known)}); "
                                                "name one of them or give the template text")
        text = path.read_text(encoding="utf-8")
    elif len(value) < 20 or "{" not in value:
        raise reader.error("chat_template", f"{value[:40]!r} is neither a template name nor a Jinja template (mergekit "
                                            "takes text of at least 20 characters with '{' for one)")
    else:
        text = value
    if not (Path(theta0) / TOKENIZER_CONFIG).is_file():
        raise reader.error("chat_template", f"θ0 ({theta0}) has no {TOKENIZER_CONFIG} to set the template in; add "
                                            "θ0's tokenizer files or remove chat_template")
    return text


def write_chat_template(out_dir: Path, template: str) -> None:
    """Set the merged tokenizer's chat template where transformers' save_pretrained puts it (chat_template.jinja, the
    file mergekit's output holds), replacing θ0's in whichever form θ0 held it."""
    config_path = out_dir / TOKENIZER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "chat_template" in config:
        del config["chat_template"]
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "chat_template.json").unlink(missing_ok=True)
    (out_dir / "chat_template.jinja").write_text(template, encoding="utf-8")


def _dtype(reader: _Reader, key: str, value: Any) -> str | None:
    if value is None:
        return None
    name = str(value).removeprefix("torch.")
    if name not in DTYPES:
        raise reader.error(key, f"'{value}' is not a floating dtype; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def _check_tokenizer(reader: _Reader, data: dict, theta0: str) -> None:
    """The output carries θ0's tokenizer files (with the config's chat template, if any): a config asking for any
    other tokenizer does not map."""
    source = data.get("tokenizer_source")
    if source is not None and source not in ("base", theta0):
        raise reader.error("tokenizer_source", f"'{source}': lines copies θ0's tokenizer and never rebuilds "
                                               "embeddings for another vocabulary; use tokenizer_source: base")
    tokenizer = data.get("tokenizer")
    if tokenizer is not None:
        if not isinstance(tokenizer, dict) or tokenizer.get("source") not in ("base", theta0) or \
                set(tokenizer) - {"source"}:
            raise reader.error("tokenizer", "only {source: base} maps here (θ0's tokenizer, no added tokens)")
