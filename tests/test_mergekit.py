"""mergekit configs read as they are: every method both tools share, merged by `lines merge` and by mergekit itself
on the same config (bf16 checkpoints, agreement within one bf16 spacing), against the fp64 reference (LiNeS on top
included), and configs that do not map as one-line errors.

mergekit runs in this process through `run_merge`, the function `mergekit-yaml` calls (one test runs the
`mergekit-yaml` executable itself). DARE's drop masks are random in both tools and come from different generators,
so for DARE mergekit's own Bernoulli draw is replaced by this project's seeded masks; every other line of mergekit's
DARE (L1 rescaling, sign election, normalisation) runs as it is.
"""
import json
import subprocess
import sys
from pathlib import Path

import mergekit.sparsify
import numpy as np
import pytest
import torch
import yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import run_merge
from mergekit.options import MergeOptions

import lines
import lines.mergekit_export
import tiny
from lines.checkpoint import Checkpoint
from lines.cli import main as lines_main
from lines.merge_methods import dare_keep_mask, dare_seed
from reference_merge import depth_scale, mergekit_update, setting_value

NUM_LAYERS = 3


def build(root: Path, dtype) -> dict[str, str]:
    base = tiny.tiny_model("llama", seed=0, dtype=dtype)
    tiny.save(base, root / "base")
    for i, scale in enumerate([0.05, 0.08, 0.03]):
        tiny.save(tiny.perturbed_copy(base, seed=10 + i, scale=scale), root / f"p{i}")
    return {"B": str(root / "base"), "P0": str(root / "p0"), "P1": str(root / "p1"), "P2": str(root / "p2")}


@pytest.fixture(scope="module")
def bf16(tmp_path_factory):
    return build(tmp_path_factory.mktemp("mk-bf16"), torch.bfloat16)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    return build(tmp_path_factory.mktemp("mk-fp32"), torch.float32)


def load(path) -> dict[str, torch.Tensor]:
    checkpoint = Checkpoint(path)
    try:
        return {name: checkpoint.read(name) for name in checkpoint.tensors}
    finally:
        checkpoint.close()


# The shapes mergekit users write: per-model and top-level parameters, gradients, filters, defaults, θ0 listed
# among the models or not, negative weights, normalisation off, lambda.
CONFIGS = {
    "linear": lambda m: {
        "merge_method": "linear",
        "models": [{"model": m["P0"], "parameters": {"weight": 0.3}},
                   {"model": m["P1"], "parameters": {"weight": [0.7, 0.2]}},
                   {"model": m["P2"], "parameters": {"weight": [{"filter": "mlp", "value": 0.5}, {"value": 0.1}]}}]},
    "linear-unnormalised-with-base": lambda m: {
        "merge_method": "linear", "base_model": m["B"],
        "models": [{"model": m["P0"], "parameters": {"weight": 0.3}}, {"model": m["P1"], "parameters": {"weight": 0.9}}],
        "parameters": {"normalize": False, "weight": 0.1}},
    "task_arithmetic": lambda m: {
        "merge_method": "task_arithmetic", "base_model": m["B"],
        "models": [{"model": m["P0"], "parameters": {"weight": [0.3, 0.9]}},
                   {"model": m["P1"], "parameters": {"weight": 0.7}}],
        "parameters": {"lambda": 0.8}},
    "task_arithmetic-normalised": lambda m: {
        "merge_method": "task_arithmetic", "base_model": m["B"],
        "models": [{"model": m["P0"]}, {"model": m["P1"], "parameters": {"weight": 0.25}}],
        "parameters": {"normalize": True, "weight": [1.0, 0.5, 0.0, 0.5]}},
    "ties": lambda m: {
        "merge_method": "ties", "base_model": m["B"],
        "models": [{"model": m["B"]},
                   {"model": m["P0"], "parameters": {"weight": 0.6, "density": [0.3, 0.8]}},
                   {"model": m["P1"], "parameters": {"weight": -0.4, "density": 0.5}},
                   {"model": m["P2"], "parameters": {"weight": [{"filter": "self_attn", "value": [0.2, 1.0]},
                                                                {"value": 0.5}]}}],
        "parameters": {"density": 0.6, "int8_mask": True}},
    "ties-rescaled-lambda": lambda m: {
        "merge_method": "ties", "base_model": m["B"],
        "models": [{"model": m["P0"], "parameters": {"weight": 0.5}}, {"model": m["P1"], "parameters": {"weight": 0.5}}],
        "parameters": {"density": 0.4, "rescale": True, "normalize": False, "lambda": [0.5, 1.5]}},
    "dare_ties": lambda m: {
        "merge_method": "dare_ties", "base_model": m["B"],
        "models": [{"model": m["P0"], "parameters": {"weight": 0.6, "density": 0.5}},
                   {"model": m["P1"], "parameters": {"weight": 0.4, "density": [0.3, 0.9]}}]},
    "dare_linear": lambda m: {
        "merge_method": "dare_linear", "base_model": m["B"],
        "models": [{"model": m["P0"], "parameters": {"weight": 0.6}}, {"model": m["P1"], "parameters": {"weight": 0.7}}],
        "parameters": {"density": 0.5, "normalize": True}},
    "slerp": lambda m: {  # mergekit's README example: t per layer for attention and MLPs, 0.5 elsewhere
        "merge_method": "slerp", "base_model": m["B"],
        "models": [{"model": m["B"]}, {"model": m["P1"]}],
        "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                             {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]}},
}


def bf16_spacings(ours: torch.Tensor, theirs: torch.Tensor, inputs: list[torch.Tensor]) -> float:
    """max |ours − theirs| in bf16 spacings at the scale of the values involved (inputs and outputs): 1 is one
    rounding step apart, which two correct merges rounded to bf16 from fp32 may be."""
    scale = torch.stack([t.float().abs() for t in [ours, theirs, *inputs]]).amax(0).clamp_min(2.0 ** -126)
    return float(((ours.float() - theirs.float()).abs() / torch.exp2(torch.floor(torch.log2(scale)) - 7)).max())


def mergekit_merge(config: dict, out: Path, seed: int = 0) -> Path:
    """mergekit's own merge of `config`; for DARE with this project's keep masks in place of its Bernoulli draw."""
    options = MergeOptions(copy_tokenizer=False, quiet=True, write_model_card=False)
    if config["merge_method"].startswith("dare"):
        with seeded_masks(config, seed):
            run_merge(MergeConfiguration.model_validate(config), str(out), options=options)
    else:
        run_merge(MergeConfiguration.model_validate(config), str(out), options=options)
    return out


class seeded_masks:
    """Replace mergekit.sparsify.bernoulli: find which (tensor, policy) a task vector belongs to and keep the entries
    this project's mask for it keeps, then run the rest of mergekit's function (its L1 rescaling) unchanged."""

    def __init__(self, config: dict, seed: int):
        base = load(config["base_model"])
        policies = [m["model"] for m in config["models"] if m["model"] != config["base_model"]]
        self.owner = {}
        for index, path in enumerate(policies):
            for name, tensor in load(path).items():
                tv = tensor.float() - base[name].float()
                self.owner[tv.numpy().tobytes()] = (name, index)
        self.seed = seed

    def __enter__(self):
        self.original = mergekit.sparsify.bernoulli

        def bernoulli(tensor, density, rescale_norm=None):
            if density >= 1:
                return tensor
            name, index = self.owner[tensor.float().numpy().tobytes()]
            mask = dare_keep_mask(tuple(tensor.shape), density, dare_seed(self.seed, name, index)).to(tensor.dtype)
            return mergekit.sparsify.rescaled_masked_tensor(tensor, mask, rescale_norm)

        mergekit.sparsify.bernoulli = bernoulli
        return self

    def __exit__(self, *exc):
        mergekit.sparsify.bernoulli = self.original


def write_config(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def assert_within_one_bf16_spacing(name: str, bf16, ours_dir, theirs_dir):
    """This project's merge and mergekit's hold the same tensors, each within one bf16 spacing of the other at the
    inputs' scale; returns (ours, inputs) for further checks."""
    ours, theirs = load(ours_dir), load(theirs_dir)
    inputs = [load(bf16[k]) for k in ("B", "P0", "P1", "P2")]
    assert set(ours) == set(theirs)
    worst = max(bf16_spacings(ours[n], theirs[n], [x[n] for x in inputs]) for n in ours)
    assert worst <= 1.0, f"{name}: {worst:.2f} bf16 spacings apart"
    return ours, inputs


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_merges_as_mergekit_does(bf16, name, tmp_path):
    config = {**CONFIGS[name](bf16), "dtype": "float32", "out_dtype": "bfloat16"}
    path = write_config(config, tmp_path / "mergekit.yaml")
    assert lines_main(["merge", str(path), str(tmp_path / "lines"), "--quiet"]) == 0
    mergekit_merge(config, tmp_path / "mergekit")

    ours, inputs = assert_within_one_bf16_spacing(name, bf16, tmp_path / "lines", tmp_path / "mergekit")
    moved = max(float((ours[n].float() - inputs[0][n].float()).abs().max()) for n in ours)
    assert moved > 1e-2  # a merge that returned θ0 would not pass for want of a difference


@pytest.mark.slow  # runs mergekit-yaml in a fresh interpreter
def test_mergekit_yaml_executable_agrees(bf16, tmp_path):
    """The same comparison through the `mergekit-yaml` command line for one config with gradients and filters."""
    config = {**CONFIGS["ties"](bf16), "dtype": "float32", "out_dtype": "bfloat16"}
    path = write_config(config, tmp_path / "mergekit.yaml")
    assert lines_main(["merge", str(path), str(tmp_path / "lines"), "--quiet"]) == 0
    executable = Path(sys.executable).parent / "mergekit-yaml"
    subprocess.run([str(executable), str(path), str(tmp_path / "mergekit"), "--no-copy-tokenizer"], check=True,
                   capture_output=True)
    ours, theirs = load(tmp_path / "lines"), load(tmp_path / "mergekit")
    inputs = [load(bf16[k]) for k in ("B", "P0", "P1", "P2")]
    assert max(bf16_spacings(ours[n], theirs[n], [x[n] for x in inputs]) for n in ours) <= 1.0


# -- `slices:` that make a plain merge -----------------------------------------------------------------------

def full_slice(models: list[dict], num_layers: int = NUM_LAYERS) -> list[dict]:
    return [{"sources": [{**m, "layer_range": [0, num_layers]} for m in models]}]


# mergekit's README SLERP example (models as one full-range slice each), and other plain merges written as slices:
# slice parameters between the sources' and the top-level ones, several slices without gradients, linear without θ0.
SLICE_CONFIGS = {
    "readme-slerp": lambda m: {
        "slices": full_slice([{"model": m["B"]}, {"model": m["P1"]}]),
        "merge_method": "slerp", "base_model": m["B"],
        "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                             {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]}},
    "ties-slice-parameters": lambda m: {
        "merge_method": "ties", "base_model": m["B"],
        "slices": [{"sources": [{"model": m["B"], "layer_range": [0, 3]},
                                {"model": m["P0"], "layer_range": [0, 3], "parameters": {"weight": [0.2, 0.9]}},
                                {"model": m["P1"], "layer_range": [0, 3]}],
                    "parameters": {"weight": 0.4, "density": [0.3, 0.7], "normalize": False}}],
        "parameters": {"density": 0.9, "normalize": True}},
    "task_arithmetic-three-slices": lambda m: {
        "merge_method": "task_arithmetic", "base_model": m["B"],
        "slices": [{"sources": [{"model": m["B"], "layer_range": r}, {"model": m["P0"], "layer_range": r,
                                                                       "parameters": {"weight": 0.7}},
                                {"model": m["P2"], "layer_range": r, "parameters": {"weight": 0.4}}]}
                   for r in ([0, 1], [1, 2], [2, 3])],
        "parameters": {"lambda": 0.9}},
    "linear-without-base": lambda m: {  # under slices mergekit averages the sources only, not base_model
        "merge_method": "linear", "base_model": m["B"],
        "slices": full_slice([{"model": m["P0"], "parameters": {"weight": 0.3}},
                              {"model": m["P1"], "parameters": {"weight": 0.6}}])},
}


@pytest.mark.parametrize("name", list(SLICE_CONFIGS))
def test_plain_slices_merge_as_mergekit_does(bf16, name, tmp_path):
    config = {**SLICE_CONFIGS[name](bf16), "dtype": "float32", "out_dtype": "bfloat16"}
    path = write_config(config, tmp_path / "mergekit.yaml")
    assert lines_main(["merge", str(path), str(tmp_path / "lines"), "--quiet"]) == 0
    mergekit_merge(config, tmp_path / "mergekit")
    ours, inputs = assert_within_one_bf16_spacing(name, bf16, tmp_path / "lines", tmp_path / "mergekit")
    assert max(float((ours[n].float() - inputs[0][n].float()).abs().max()) for n in ours) > 1e-2


def test_readme_slerp_example_as_written(tmp_path):
    """mergekit's README SLERP example as it stands (dtype: float16, θ0 and the other model as one full-range slice
    each) on fp16 checkpoints: within one fp16 spacing of mergekit's output."""
    root = tmp_path / "models"
    base = tiny.tiny_model("llama", seed=0, dtype=torch.float16)
    tiny.save(base, root / "base")
    tiny.save(tiny.perturbed_copy(base, seed=11, scale=0.08), root / "p1")
    m = {"B": str(root / "base"), "P1": str(root / "p1")}
    config = {**SLICE_CONFIGS["readme-slerp"](m), "dtype": "float16"}
    path = write_config(config, tmp_path / "mergekit.yaml")
    assert lines_main(["merge", str(path), str(tmp_path / "lines"), "--quiet"]) == 0
    mergekit_merge(config, tmp_path / "mergekit")
    ours, theirs, inputs = load(tmp_path / "lines"), load(tmp_path / "mergekit"), [load(root / "base"), load(root / "p1")]
    assert set(ours) == set(theirs) and all(ours[n].dtype == torch.float16 for n in ours)
    for n in ours:
        scale = torch.stack([t.float().abs() for t in [ours[n], theirs[n], *(x[n] for x in inputs)]]).amax(0)
        spacing = torch.exp2(torch.floor(torch.log2(scale.clamp_min(2.0 ** -14))) - 10)
        assert float(((ours[n].float() - theirs[n].float()).abs() / spacing).max()) <= 1.0, n


def test_readme_slerp_as_slices_is_the_models_form(fp32, tmp_path):
    """One full-range slice is the `models:` config: the same merge, bit for bit."""
    sliced = {**SLICE_CONFIGS["readme-slerp"](fp32), "dtype": "float64"}
    as_models = {**{k: v for k, v in sliced.items() if k != "slices"},
                 "models": [{"model": fp32["B"]}, {"model": fp32["P1"]}]}
    a = load(lines.merge(write_config(sliced, tmp_path / "a.yaml"), tmp_path / "a", progress=False))
    b = load(lines.merge(write_config(as_models, tmp_path / "b.yaml"), tmp_path / "b", progress=False))
    assert set(a) == set(b) and all(torch.equal(a[n], b[n]) for n in a)


# -- chat_template ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def with_tokenizer(tmp_path_factory):
    """θ0 with a tokenizer that has a chat template of its own (which the config's replaces), and one policy."""
    root = tmp_path_factory.mktemp("mk-chat")
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, root / "base")
    tiny.with_chat_template(tiny.tiny_tokenizer()).save_pretrained(str(root / "base"))
    tiny.save(tiny.perturbed_copy(base, seed=10), root / "p0")
    tiny.save(tiny.perturbed_copy(base, seed=11), root / "p1")
    return {"B": str(root / "base"), "P0": str(root / "p0"), "P1": str(root / "p1")}


# Keys transformers adds to tokenizer_config.json when it re-saves a tokenizer it loaded from a local directory, as
# mergekit does to set the template; they record how the file was loaded and are not part of the tokenizer.
RESAVE_KEYS = {"is_local", "local_files_only"}
CHATML_TEXT = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
               "'<|im_end|>' + '\\n'}}{% endfor %}")


@pytest.mark.parametrize("template,extra", [("chatml", {}), ("llama3", {"tokenizer_source": "base"}),
                                             (CHATML_TEXT, {})], ids=["name", "name-tokenizer-base", "text"])
def test_chat_template_as_mergekit_writes_it(with_tokenizer, template, extra, tmp_path):
    from transformers import AutoTokenizer

    m = with_tokenizer
    config = {"merge_method": "task_arithmetic", "base_model": m["B"], "chat_template": template, **extra,
              "models": [{"model": m["P0"], "parameters": {"weight": 0.5}}]}
    path = write_config(config, tmp_path / "mergekit.yaml")
    assert lines_main(["merge", str(path), str(tmp_path / "lines"), "--quiet"]) == 0
    run_merge(MergeConfiguration.model_validate(config), str(tmp_path / "mergekit"),
              options=MergeOptions(quiet=True, write_model_card=False))
    ours, theirs = tmp_path / "lines", tmp_path / "mergekit"
    for name in ("chat_template.jinja", "tokenizer.json"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    configs = [{k: v for k, v in json.loads((d / "tokenizer_config.json").read_text()).items() if k not in RESAVE_KEYS}
               for d in (ours, theirs)]
    assert configs[0] == configs[1]
    conversation = [{"role": "user", "content": "was the soup cold"}, {"role": "assistant", "content": "yes"}]
    rendered = [AutoTokenizer.from_pretrained(str(d)).apply_chat_template(conversation, tokenize=False)
                for d in (ours, theirs)]
    assert rendered[0] == rendered[1] and rendered[0] != AutoTokenizer.from_pretrained(m["B"]).apply_chat_template(
        conversation, tokenize=False)


# -- against the fp64 reference, LiNeS on top ----------------------------------------------------------------

LINES_BLOCKS = [None, {"alpha": 0.3, "beta": 0.6}, {"alpha": "auto", "beta": 0.5, "head_depth": "last"}]


def reference(config: dict, lines_cfg: dict | None, seed: int = 0) -> dict[str, np.ndarray]:
    """The config's merge from mergekit's formulas in fp64, each setting evaluated per tensor by np.interp."""
    from lines.mergekit_config import METHODS

    method = METHODS[config["merge_method"]][0]
    base_path = config.get("base_model") or config["models"][0]["model"]
    models = [m for m in config["models"] if method == "mergekit_linear" or m["model"] != base_path]
    if method == "mergekit_linear" and config.get("base_model") and all(m["model"] != base_path for m in models):
        models = models + [{"model": base_path}]
    base = {n: t.double().numpy() for n, t in load(base_path).items()}
    thetas = [{n: t.double().numpy() for n, t in load(m["model"]).items()} for m in models]
    shared = config.get("parameters") or {}

    def value(model: dict, key: str, name: str, default=None):
        for source in ((model.get("parameters") or {}), shared):
            if key in source:
                found = setting_value(source[key], name, NUM_LAYERS)
                if found is not None:
                    return found
        return default

    updates, means = {}, {}
    for name in base:
        tvs = [theta[name] - base[name] for theta in thetas]
        weights = [value(m, "weight", name, 1.0) for m in models]
        params = {"normalize": value({}, "normalize", name, {"mergekit_ties": True, "mergekit_linear": True}.get(
                      method, False)),
                  "rescale": value({}, "rescale", name, method.startswith("mergekit_dare")),
                  "lambda_": value({}, "lambda", name, 1.0), "t": value({}, "t", name),
                  "density": [value(m, "density", name, 1.0) for m in models]}
        updates[name] = mergekit_update(name, base[name], tvs, method, weights, params, seed)
        mean = np.asarray(weights) / np.sum(weights)
        means[name] = sum(w * tv for w, tv in zip(mean, tvs))
    if lines_cfg is None:
        return {n: base[n] + updates[n] for n in base}
    alpha = lines_cfg["alpha"]
    if alpha == "auto":
        alpha = sum(np.abs(m).sum() for m in means.values()) / sum(np.abs(u).sum() for u in updates.values())
    return {n: base[n] + depth_scale(n, alpha, lines_cfg["beta"], NUM_LAYERS, lines_cfg.get("head_depth", "alpha"),
                                     False) * updates[n] for n in base}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("lines_cfg", LINES_BLOCKS, ids=["plain", "lines", "lines-auto-head-last"])
def test_config_matches_fp64_reference(fp32, name, lines_cfg, tmp_path):
    config = CONFIGS[name](fp32)
    if lines_cfg is not None:
        if "base_model" not in config:  # linear: θ0 becomes an input too, here with weight 0
            config["models"] = config["models"] + [{"model": fp32["B"], "parameters": {"weight": 0.0}}]
        config = {"base_model": fp32["B"], **config, "lines": lines_cfg}
    path = write_config({**config, "dtype": "float64"}, tmp_path / "mergekit.yaml")
    out = lines.merge(str(path), tmp_path / "out", progress=False)
    merged = load(out)
    expected = reference(config, lines_cfg)
    assert set(merged) == set(expected)
    worst = max(float(np.abs(merged[n].double().numpy() - expected[n]).max()) for n in expected)
    assert worst <= 1e-9, f"max abs error {worst:.3g}"


def test_lines_block_changes_only_the_update_scale(bf16, tmp_path):
    """A `lines:` block with α = 1, β = 0 is no LiNeS: the merge is mergekit's."""
    config = {**CONFIGS["ties"](bf16), "dtype": "float32"}
    plain = lines.merge(write_config(config, tmp_path / "a.yaml"), tmp_path / "plain", progress=False)
    same = lines.merge(write_config({**config, "lines": {"alpha": 1.0, "beta": 0.0}}, tmp_path / "b.yaml"),
                       tmp_path / "same", progress=False)
    a, b = load(plain), load(same)
    assert all(torch.equal(a[n], b[n]) for n in a)


# -- configs that do not map --------------------------------------------------------------------------------

BAD = [
    (lambda m: {"merge_method": "della", "base_model": m["B"], "models": [{"model": m["P0"]}]},
     "field 'merge_method': mergekit's 'della' has no exact counterpart here; the methods both tools share are linear, "
     "task_arithmetic, ties, dare_ties, dare_linear, slerp"),
    (lambda m: {"merge_method": "slerp", "slices": [{"sources": [{"model": m["P0"], "layer_range": [0, 3]}]}],
                "base_model": m["B"], "parameters": {"t": 0.5}},
     "field 'slices.0.sources': mergekit's slerp takes θ0 from the slices' sources; list base_model among them"),
    (lambda m: {"merge_method": "linear", "slices": [{"sources": [{"model": m["P0"], "layer_range": [0, 2]},
                                                                  {"model": m["P1"], "layer_range": [1, 3]}]}],
                "parameters": {"weight": 1}},
     "field 'slices.0.sources.1.layer_range': [1, 3] differs from the slice's first source's [0, 2]: merging layers "
     "of different depths is a frankenmerge"),
    (lambda m: {"merge_method": "linear", "parameters": {"weight": 1},  # a passthrough-style stack: layers repeated
                "slices": [{"sources": [{"model": m["P0"], "layer_range": [0, 2]}]},
                           {"sources": [{"model": m["P0"], "layer_range": [1, 3]}]}]},
     "field 'slices.1.sources.0.layer_range': starts at layer 1 where layer 2 comes next: slices that skip, repeat "
     "or reorder layers make a frankenmerge"),
    (lambda m: {"merge_method": "linear", "parameters": {"weight": 1},
                "slices": [{"sources": [{"model": m["P0"], "layer_range": [0, 2]}]}]},
     "field 'slices.0.sources.0.layer_range': the slices end at layer 2 but θ0"),
    (lambda m: {"merge_method": "linear", "parameters": {"weight": 1},
                "slices": [{"sources": [{"model": m["P0"], "layer_range": [0, 1]}]},
                           {"sources": [{"model": m["P1"], "layer_range": [1, 3]}]}]},
     "field 'slices.1.sources': lists other models than slice 0"),
    (lambda m: {"merge_method": "linear", "parameters": {"weight": [0.2, 0.8]},
                "slices": [{"sources": [{"model": m["P0"], "layer_range": [0, 1]}]},
                           {"sources": [{"model": m["P0"], "layer_range": [1, 3]}]}]},
     "field 'parameters.weight': is a gradient, which mergekit spreads over each of the 2 slices anew"),
    (lambda m: {"merge_method": "linear", "parameters": {"weight": 1},
                "slices": [{"sources": [{"model": m["P0"], "layer_range": [0, 1]}]},
                           {"sources": [{"model": m["P0"], "layer_range": [1, 3]}], "parameters": {"weight": 2}}]},
     "field 'slices.1': has other parameters than slice 0"),
    (lambda m: {"merge_method": "task_arithmetic", "base_model": m["B"], "chat_template": "chatmlx",
                "models": [{"model": m["P0"], "parameters": {"weight": 1}}]},
     "field 'chat_template': 'chatmlx' is not a template mergekit knows (alpaca, chatml,"),
    (lambda m: {"merge_method": "task_arithmetic", "base_model": m["B"], "chat_template": "auto",
                "models": [{"model": m["P0"], "parameters": {"weight": 1}}]},
     "field 'chat_template': 'auto' makes mergekit pick the most common template among the inputs"),
    (lambda m: {"merge_method": "task_arithmetic", "base_model": m["B"], "chat_template": "{{ x }}",
                "models": [{"model": m["P0"], "parameters": {"weight": 1}}]},
     "field 'chat_template': '{{ x }}' is neither a template name nor a Jinja template"),
    (lambda m: {"merge_method": "task_arithmetic", "base_model": m["B"], "chat_template": "chatml",
                "models": [{"model": m["P0"], "parameters": {"weight": 1}}]},
     "has no tokenizer_config.json to set the template in"),
    (lambda m: {"merge_method": "linear", "modules": {"decoder": {"models": [{"model": m["P0"]}]}}},
     "field 'modules': mergekit's per-module layer slicing (frankenmerges) has no counterpart here"),
    (lambda m: {"merge_method": "linear", "models": [{"model": m["P0"], "parameters": {"weight": 1}}], "dtyp": "bf16"},
     "field 'dtyp': is not a mergekit setting lines reads"),
    (lambda m: {"merge_method": "ties", "base_model": m["B"],
                "models": [{"model": m["P0"], "parameters": {"weight": 1, "densty": 0.5}}]},
     "field 'models.0.parameters.densty': mergekit's ties has no parameter 'densty'"),
    (lambda m: {"merge_method": "ties", "base_model": m["B"],
                "models": [{"model": m["P0"], "parameters": {"weight": 1, "normalize": False}}]},
     "field 'models.0.parameters.normalize': 'normalize' is a setting of the whole merge"),
    (lambda m: {"merge_method": "ties", "base_model": m["B"], "models": [{"model": m["P0"]}]},
     "field 'models.0.parameters.weight': is required by mergekit's ties"),
    (lambda m: {"merge_method": "ties", "models": [{"model": m["P0"], "parameters": {"weight": 1}}]},
     "field 'base_model': mergekit's ties merges task vectors from a base model; set base_model"),
    (lambda m: {"merge_method": "linear", "base_model": m["B"], "models": [{"model": m["P0"], "parameters": {"weight": 1}}]},
     "field 'base_model': mergekit's linear averages base_model with the models, so it needs a weight"),
    (lambda m: {"merge_method": "task_arithmetic", "base_model": m["B"], "tokenizer_source": "union",
                "models": [{"model": m["P0"], "parameters": {"weight": 1}}]},
     "field 'tokenizer_source': 'union': lines copies θ0's tokenizer"),
    (lambda m: {"merge_method": "linear", "models": [{"model": m["P0"], "parameters": {"weight": 1}}],
                "lines": {"alpha": 0.5, "beta": 0.5}},
     "field 'lines': LiNeS scales the merged update from θ0; set base_model"),
    (lambda m: {"merge_method": "task_arithmetic", "base_model": m["B"],
                "models": [{"model": m["P0"] + "+" + m["P1"], "parameters": {"weight": 1}}]},
     "is mergekit's model+LoRA syntax"),
    (lambda m: {"merge_method": "task_arithmetic", "base_model": m["B"],
                "models": [{"model": m["P0"], "parameters": {"weight": [0.1, "heavy"]}}]},
     "field 'models.0.parameters.weight.1': expected a float, got 'heavy'"),
    (lambda m: {"merge_method": "slerp", "base_model": m["B"], "models": [{"model": m["P0"]}, {"model": m["P1"]}],
                "parameters": {"t": 0.5}},
     "field 'models': mergekit's slerp interpolates base_model and one other model; got 2 besides the base"),
    (lambda m: {"merge_method": "ties", "base_model": m["B"],
                "models": [{"model": m["P0"], "parameters": {"weight": [{"filter": "mlp", "value": 1.0}]}}]},
     "no condition of weights.0 applies to it; add a condition without a filter"),
]


@pytest.mark.parametrize("make,expected", BAD, ids=range(len(BAD)))
def test_config_that_does_not_map_is_one_error(bf16, make, expected, tmp_path, capsys):
    path = write_config(make(bf16), tmp_path / "mergekit.yaml")
    assert lines_main(["merge", str(path), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err, err
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir() if p.is_dir())


# -- the table of docs/merging.md: what is accepted and what is refused -----------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "merging.md"


def docs_table() -> dict[str, str]:
    """First cell -> "accepted" or "refused", from the table headed `| mergekit config | here | why |`."""
    rows, inside = {}, False
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("| mergekit config | here | why |"):
            inside = True
        elif inside and line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1]
        elif inside and not line.startswith("|"):
            break
    return rows


def ta(m, **extra):
    return {"merge_method": "task_arithmetic", "base_model": m["B"],
            "models": [{"model": m["P0"], "parameters": {"weight": 0.5}}], **extra}


def sliced(m, ranges, parameters=None, **extra):
    return {"merge_method": "task_arithmetic", "base_model": m["B"], **extra,
            "slices": [{"sources": [{"model": m["B"], "layer_range": r},
                                    {"model": m["P0"], "layer_range": r, "parameters": {"weight": 0.5}}],
                        **({"parameters": parameters} if parameters else {})} for r in ranges]}


# One config per row of the table (keyed by its first cell), tried for the row's verdict.
TABLE_PROBES = {
    "`merge_method` linear, task_arithmetic, ties, dare_linear, dare_ties, slerp":
        lambda m: {"merge_method": "slerp", "base_model": m["B"], "models": [{"model": m["P0"]}],
                   "parameters": {"t": 0.5}},
    "`merge_method` of another method (breadcrumbs, della, model_stock, nuslerp, passthrough, ...)":
        lambda m: {**ta(m), "merge_method": "della"},
    "`models`": lambda m: ta(m),
    "`base_model`": lambda m: ta(m),
    "`parameters` per model and top level: numbers, gradients, `{filter, value}` lists":
        lambda m: ta(m, parameters={"weight": [{"filter": "mlp", "value": [0.1, 0.9]}, {"value": 0.3}],
                                    "lambda": [0.5, 1.0]}),
    "a parameter the method does not have": lambda m: ta(m, parameters={"densty": 0.5}),
    "a method-wide parameter (normalize, lambda, t, ...) given per model":
        lambda m: {**ta(m), "models": [{"model": m["P0"], "parameters": {"weight": 0.5, "lambda": 2.0}}]},
    "`slices`: one full-range slice, or slices that cover θ0's layers in order once, each with every model and one "
    "`layer_range`": lambda m: sliced(m, [[0, 1], [1, 3]], parameters={"lambda": 0.5}),
    "`slices` that skip, repeat or reorder layers, or merge different models or depths in one slice":
        lambda m: sliced(m, [[0, 2], [1, 3]]),
    "several `slices` with a gradient, or with parameters that differ between slices":
        lambda m: sliced(m, [[0, 1], [1, 3]], parameters={"lambda": [0.5, 1.0]}),
    "`modules`": lambda m: {"merge_method": "linear", "modules": {"decoder": {"models": [{"model": m["P0"]}]}}},
    "`dtype`, `out_dtype`": lambda m: ta(m, dtype="float32", out_dtype="bfloat16"),
    "`tokenizer_source: base`, `tokenizer: {source: base}`": lambda m: ta(m, tokenizer_source="base"),
    "`tokenizer_source: union` or another model's, `tokenizer` with added tokens":
        lambda m: ta(m, tokenizer_source="union"),
    "`chat_template`: a template name mergekit knows (chatml, llama3, ...) or the template text":
        lambda m: ta(m, chat_template="llama3"),
    "`chat_template: auto`": lambda m: ta(m, chat_template="auto"),
    "a model written `model+lora`":
        lambda m: {**ta(m), "models": [{"model": m["P0"] + "+" + m["P1"], "parameters": {"weight": 1}}]},
    "`lines`": lambda m: ta(m, lines={"alpha": 0.5, "beta": 0.5}),
}


# What each refused row's probe is refused for (so that it is not refused for another reason).
REFUSED_FOR = {
    "`merge_method` of another method": "has no exact counterpart here",
    "a parameter the method does not have": "has no parameter 'densty'",
    "a method-wide parameter": "is a setting of the whole merge",
    "`slices` that skip": "slices that skip, repeat or reorder layers make a frankenmerge",
    "several `slices`": "which mergekit spreads over each of the 2 slices anew",
    "`modules`": "per-module layer slicing (frankenmerges)",
    "`tokenizer_source: union`": "never rebuilds embeddings for another vocabulary",
    "`chat_template: auto`": "'auto' makes mergekit pick the most common template",
    "a model written `model+lora`": "is mergekit's model+LoRA syntax",
}


def test_docs_table_rows_hold(with_tokenizer):
    """Each row's verdict is what `lines merge` does with a config of that row (read, not merged: the merges are
    compared with mergekit's above)."""
    from lines.mergekit_config import recipe_from_mergekit

    table = docs_table()
    assert set(table) == set(TABLE_PROBES), "the table of docs/merging.md and TABLE_PROBES list other rows"
    for row, make in TABLE_PROBES.items():
        assert table[row] in ("accepted", "refused"), row
        try:
            recipe_from_mergekit(make(with_tokenizer), "mergekit.yaml")
            verdict, message = "accepted", ""
        except lines.LinesError as exc:
            verdict, message = "refused", str(exc)
        assert verdict == table[row], f"{row}: {message}"
        reasons = [needle for start, needle in REFUSED_FOR.items() if row.startswith(start)]
        assert len(reasons) == (verdict == "refused") and all(r in message for r in reasons), f"{row}: {message}"


def test_docs_table_covers_every_mergekit_key_and_method():
    from mergekit.merge_methods.registry import registered_methods

    from lines.mergekit_config import METHODS

    text = " ".join(docs_table())
    for key in MergeConfiguration.model_fields:
        assert f"`{key}" in text, f"mergekit's {key} has no row in the table of docs/merging.md"
    assert "`lines`" in text
    accepted_row = next(row for row in docs_table() if row.startswith("`merge_method` linear"))
    assert sorted(accepted_row.removeprefix("`merge_method` ").split(", ")) == sorted(METHODS)
    others = sorted(m.spec.name for m in registered_methods() if m.spec.name not in METHODS)
    assert others, "mergekit has methods without a counterpart here, which the refused row stands for"
    for name in others:
        with pytest.raises(lines.LinesError, match="has no exact counterpart here"):
            from lines.mergekit_config import recipe_from_mergekit

            recipe_from_mergekit({"merge_method": name, "models": [{"model": "x"}]})


# -- edge cases of the maths, against mergekit's own methods on hand-made tensors -----------------------------

def mergekit_method(name: str, base: torch.Tensor, others: list[torch.Tensor], **parameters) -> torch.Tensor:
    """mergekit's registered method on one tensor group: θ0 first, then the other inputs."""
    from mergekit.merge_methods import registry
    from mergekit.merge_methods.base import TensorGroup

    group = TensorGroup.from_tensors([base, *others], base_index=0, name="model.layers.0.mlp.up_proj.weight")
    return registry.get(name)([group], parameters=parameters)[0]


def ours(method: str, base: torch.Tensor, others: list[torch.Tensor], weights: list[float], **parameters):
    from lines.method_registry import MergeContext, get_method
    from lines.recipe import MergeSpec

    spec = MergeSpec(method=method, weights=weights, parameters=parameters)
    entry = get_method(method)
    params = entry.resolved_parameters(spec.weights, spec.parameters)
    tvs = torch.stack([o - base for o in others])
    context = MergeContext("model.layers.0.mlp.up_proj.weight", 0, base)
    return base + entry.merge(tvs, torch.tensor(weights, dtype=base.dtype), params, context)


def f64(*values):
    return torch.tensor(values, dtype=torch.float64)


EDGES = [
    # A zero total elects +: only the positive entry counts there.
    ("ties", "mergekit_ties", f64(0, 0, 0), [f64(1, -1, 2), f64(-1, 1, 3)], [1.0, 1.0], {"density": 1.0}),
    # Equal magnitudes at the trimming threshold: the same entries are kept.
    ("ties", "mergekit_ties", torch.zeros(40, dtype=torch.float64),
     [torch.tensor([1.0, -1.0] * 20, dtype=torch.float64), torch.tensor([1.0, 1.0, -1.0, -1.0] * 10,
                                                                        dtype=torch.float64)], [0.5, 0.5],
     {"density": 0.45}),
    # A negative weight flips a model's sign; the agreeing weights sum to 0, so the divisor becomes 1.
    ("ties", "mergekit_ties", f64(0.5, 0.5), [f64(1.5, -0.5), f64(-0.5, 1.5)], [1.0, -1.0], {"density": 1.0}),
    # density·n below 1 still keeps one entry; rescaling to the L1 norm.
    ("ties", "mergekit_ties", f64(0, 0, 0, 0), [f64(0.1, -0.4, 0.2, 0.3), f64(0.3, 0.2, -0.1, 0.0)], [0.6, 0.4],
     {"density": 0.1, "rescale": True}),
    # Rescaling skipped where the L1 norm is below 1e-7.
    ("ties", "mergekit_ties", f64(0, 0, 0, 0), [f64(3e-8, 2e-8, 1e-8, 5e-9), f64(1e-8, -3e-8, 2e-8, 0)], [1.0, 1.0],
     {"density": 0.5, "rescale": True}),
    # Weights summing to nearly 0 are not divided by.
    ("task_arithmetic", "mergekit_task_arithmetic", f64(1, 2), [f64(2, 1), f64(0, 3)], [0.5, -0.5 + 1e-9],
     {"normalize": True}),
    ("linear", "mergekit_linear", f64(1, 2), [f64(2, 1), f64(0, 3)], [0.7, 0.6], {"normalize": False}),
]


@pytest.mark.parametrize("theirs,method,base,others,weights,params", EDGES, ids=range(len(EDGES)))
def test_edge_cases_as_mergekit(theirs, method, base, others, weights, params):
    mk_params = {k: v for k, v in params.items() if k != "density"}
    if method == "mergekit_linear":
        expected = mergekit_method(theirs, base, others, weight=[0.0] + weights, **mk_params)
        # θ0 is an input of mergekit's linear; with weight 0 it adds nothing, so ours gets it as a zero task vector.
        got = ours(method, base, [base, *others], [0.0] + weights, **params)
    else:
        if "density" in params:
            mk_params["density"] = [params["density"]] * len(others)
        expected = mergekit_method(theirs, base, others, weight=weights, **mk_params)
        got = ours(method, base, others, weights, **params)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cos", [0.9990, 0.9997, 0.2, -0.9998])
@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_slerp_as_mergekit_on_both_sides_of_the_lerp_threshold(cos, t):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, generator=gen, dtype=torch.float64)
    orth = torch.randn(64, generator=gen, dtype=torch.float64)
    orth -= (orth @ a) / (a @ a) * a
    b = 1.3 * (cos * a / a.norm() + (1 - cos ** 2) ** 0.5 * orth / orth.norm())
    expected = mergekit_method("slerp", a, [b], t=t)
    torch.testing.assert_close(ours("mergekit_slerp", a, [b], [1.0], t=t), expected, rtol=1e-12, atol=1e-14)


# -- the other direction: lines export-mergekit ---------------------------------------------------------------

EXPORTS = {
    "soup-lines": lambda m: {"base_model": m["B"], "method": "linear",
                             "models": [{"model": m["P0"], "weight": 0.3}, {"model": m["P1"], "weight": 0.7}],
                             "lines": {"alpha": 0.3, "beta": 0.6}},
    "soup-auto-head-last": lambda m: {"base_model": m["B"], "method": "linear",
                                      "models": [{"model": m["P0"], "weight": 0.5}, {"model": m["P1"], "weight": 0.5},
                                                 {"model": m["P2"], "weight": 1.0}],
                                      "lines": {"alpha": "auto", "beta": 0.5, "head_depth": "last"}},
    "task-arithmetic-centered": lambda m: {"base_model": m["B"], "method": "task_arithmetic",
                                           "models": [{"model": m["P0"], "weight": 0.6},
                                                      {"model": m["P1"], "weight": 0.6}],
                                           "lines": {"alpha": "auto", "beta": 0.8, "profile": "centered"}},
    "single-policy-gamma": lambda m: {"base_model": m["B"], "models": [{"model": m["P1"], "weight": 1.0}],
                                      "lines": {"gamma": 0.25}},
    "mergekit-ties-lines": lambda m: {**CONFIGS["ties"](m), "lines": {"alpha": "auto", "beta": 0.7}},
    "mergekit-linear-lines": lambda m: {**CONFIGS["linear-unnormalised-with-base"](m),
                                        "lines": {"alpha": 0.5, "beta": 0.5}},
    "mergekit-dare-ties-lines": lambda m: {**CONFIGS["dare_ties"](m), "lines": {"alpha": 0.4, "beta": 0.6}},
    "mergekit-slerp": lambda m: CONFIGS["slerp"](m),
}


@pytest.mark.parametrize("name", list(EXPORTS))
def test_exported_config_reproduces_the_recipe(bf16, name, tmp_path):
    recipe = {**EXPORTS[name](bf16), "dtype": "bfloat16"}
    if "merge_method" in recipe:  # a mergekit config with a lines block: its dtype keys
        recipe = {**{k: v for k, v in recipe.items() if k != "dtype"}, "dtype": "float32", "out_dtype": "bfloat16"}
    path = write_config(recipe, tmp_path / "recipe.yaml")
    assert lines_main(["merge", str(path), str(tmp_path / "lines"), "--quiet"]) == 0
    assert lines_main(["export-mergekit", str(path), "-o", str(tmp_path / "mergekit.yaml")]) == 0
    exported = yaml.safe_load((tmp_path / "mergekit.yaml").read_text())
    assert "lines" not in exported and exported["out_dtype"] == "bfloat16"
    mergekit_merge(exported, tmp_path / "mergekit")

    assert_within_one_bf16_spacing(name, bf16, tmp_path / "lines", tmp_path / "mergekit")


def test_a_lines_soup_exports_as_two_anchor_gradients(bf16, tmp_path):
    """LiNeS is affine in depth: each weight is [c·λ(0), c·λ(L−1)] over the blocks; the head (λ(L−1) with head_depth:
    last) is a filter of its own, the embeddings take the gradient's first anchor, α."""
    path = write_config({**EXPORTS["soup-lines"](bf16), "lines": {"alpha": 0.3, "beta": 0.6, "head_depth": "last"}},
                        tmp_path / "recipe.yaml")
    config, notes = lines.mergekit_export.export_mergekit(path)
    assert config["merge_method"] == "task_arithmetic" and not notes
    weight = config["models"][0]["parameters"]["weight"]
    assert {c.get("filter") for c in weight} == {"model.norm.weight", "lm_head.weight", None}
    assert weight[-1]["value"] == pytest.approx([0.3 * 0.3, 0.3 * 0.9], rel=1e-12)
    assert [c["value"] for c in weight[:-1]] == pytest.approx([0.3 * 0.9] * 2, rel=1e-12)


@pytest.mark.parametrize("recipe,expected", [
    (lambda m: {"base_model": m["B"], "method": "ties", "parameters": {"density": 0.5},
                "models": [{"model": m["P0"]}, {"model": m["P1"]}]},
     "method ties follows this project's semantics, which no mergekit method shares (docs/merging.md: mergekit configs); use "
     "method mergekit_ties for mergekit's semantics"),
    (lambda m: {"base_model": m["B"], "method": "consensus", "models": [{"model": m["P0"]}, {"model": m["P1"]}]},
     "method consensus follows this project's semantics, which no mergekit method shares (docs/merging.md: mergekit configs); "
     "mergekit has no such method"),
    (lambda m: {**CONFIGS["slerp"](m), "lines": {"alpha": 0.5, "beta": 0.5}},
     "mergekit's slerp has no scale for the merged update"),
], ids=["ties", "consensus", "slerp-lines"])
def test_a_recipe_mergekit_cannot_reproduce_is_one_error(bf16, recipe, expected, tmp_path, capsys):
    path = write_config(recipe(bf16), tmp_path / "recipe.yaml")
    assert lines_main(["export-mergekit", str(path), "-o", str(tmp_path / "out.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: export-mergekit: ") and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "out.yaml").exists()


def test_export_refuses_to_overwrite(bf16, tmp_path, capsys):
    path = write_config(EXPORTS["soup-lines"](bf16), tmp_path / "recipe.yaml")
    (tmp_path / "out.yaml").write_text("keep me")
    assert lines_main(["export-mergekit", str(path), "-o", str(tmp_path / "out.yaml")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "out.yaml").read_text() == "keep me"
