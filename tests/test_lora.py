"""Exact LoRA soups: dense merge, concatenated adapter and peft's `cat` agree; averaging A and B does not."""
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import lines
import tiny
from lines.lora import LoraAdapter

ADAPTERS = {  # name -> (family-independent) LoRA settings: unequal ranks, alphas, rsLoRA and target modules
    "helpful": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "embed_tokens"]),
    "harmless": dict(r=8, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "k_proj", "o_proj", "up_proj"]),
}


def make_adapter(base_dir, out_dir, seed, **settings):
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **settings))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:  # non-zero A and B so that every product matters
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    tiny.save(tiny.tiny_model("llama", seed=0), root / "base")
    tiny.tiny_tokenizer(root / "base")
    paths = [make_adapter(root / "base", root / name, i + 1, **s) for i, (name, s) in enumerate(ADAPTERS.items())]
    return root, paths


def merged_full(base_dir, adapter_dir):
    """θ_i by peft itself: load the adapter and merge it into the base."""
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)
    return {k: v.double() for k, v in model.merge_and_unload().state_dict().items()}


def recipe(root, paths, weights, lines_cfg=None, output="dense"):
    return lines.parse_recipe({"base_model": str(root / "base"),
                               "models": [{"model": str(p), "weight": w} for p, w in zip(paths, weights)],
                               "lines": lines_cfg, "output": output})


def max_diff(a, b):
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in b)


@pytest.mark.parametrize("lines_cfg", [None, {"alpha": 0.4, "beta": 0.8}, {"alpha": "auto", "beta": 0.5}])
def test_dense_and_concatenated_adapter_equal_the_exact_soup(adapters, tmp_path, lines_cfg):
    root, paths = adapters
    weights = [0.3, 0.7]
    dense_dir = lines.merge(recipe(root, paths, weights, lines_cfg), tmp_path / "dense", progress=False)
    dense = AutoModelForCausalLM.from_pretrained(dense_dir).state_dict()
    soup_dir = lines.merge(recipe(root, paths, weights, lines_cfg, "adapter"), tmp_path / "soup", progress=False)
    config = json.loads((soup_dir / "adapter_config.json").read_text())
    assert config["rank_pattern"][r"model\.layers\.0\.self_attn\.q_proj"] == 4 + 8  # both adapt q_proj
    assert config["rank_pattern"][r"model\.layers\.0\.self_attn\.k_proj"] == 8
    served = merged_full(root / "base", soup_dir)
    assert max_diff(served, dense) <= 1e-5

    # Independent fp64 reference from peft's own per-adapter merges: θ0 + λ(ℓ)·Σ w_i (θ_i − θ0).
    base = {k: v.double() for k, v in AutoModelForCausalLM.from_pretrained(root / "base").state_dict().items()}
    full = [merged_full(root / "base", p) for p in paths]
    tvs = {k: [f[k] - base[k] for f in full] for k in base}
    if lines_cfg is None:
        alpha, beta = 1.0, 0.0
    else:
        alpha, beta = lines_cfg["alpha"], lines_cfg["beta"]
        if alpha == "auto":  # ‖Σ w̄_i τ_i‖₁ / ‖τ_merged‖₁: 1 for this normalised (linear) soup
            mean = [w / sum(weights) for w in weights]
            total = sum(float((mean[0] * tvs[k][0] + mean[1] * tvs[k][1]).abs().sum()) for k in base)
            merged = sum(float((weights[0] * tvs[k][0] + weights[1] * tvs[k][1]).abs().sum()) for k in base)
            alpha = total / merged
    import re

    def lam(name):
        m = re.search(r"layers\.(\d+)\.", name)
        return alpha + beta * int(m.group(1)) / 2 if m else alpha

    reference = {k: base[k] + lam(k) * (weights[0] * tvs[k][0] + weights[1] * tvs[k][1]) for k in base}
    assert max_diff(dense, reference) <= 1e-5
    moved = max(float((reference[k] - base[k]).abs().max()) for k in base)
    assert moved > 1e-2


def test_peft_cat_agrees_and_averaging_factors_does_not(adapters, tmp_path):
    root, paths = adapters
    weights = [0.3, 0.7]
    dense = AutoModelForCausalLM.from_pretrained(
        lines.merge(recipe(root, paths, weights), tmp_path / "dense", progress=False)).state_dict()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base"), paths[0],
                                      adapter_name="a")
    model.load_adapter(str(paths[1]), adapter_name="b")
    model.add_weighted_adapter(["a", "b"], weights, "cat", combination_type="cat")
    model.set_adapter("cat")
    for name in ["a", "b"]:
        model.delete_adapter(name)
    peft_cat = model.merge_and_unload().state_dict()
    assert max_diff(peft_cat, dense) <= 1e-5


def test_averaging_a_and_b_separately_is_not_the_soup(tmp_path):
    """With equal ranks, peft's `linear` combination averages A and B: its cross terms B_i·A_j miss the soup."""
    tiny.save(tiny.tiny_model("llama", seed=0), tmp_path / "base")
    settings = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    paths = [make_adapter(tmp_path / "base", tmp_path / f"a{i}", i + 5, **settings) for i in range(2)]
    exact = AutoModelForCausalLM.from_pretrained(
        lines.merge(recipe(tmp_path, paths, [0.5, 0.5]), tmp_path / "dense", progress=False)).state_dict()
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "base"), paths[0],
                                      adapter_name="a")
    model.load_adapter(str(paths[1]), adapter_name="b")
    model.add_weighted_adapter(["a", "b"], [0.5, 0.5], "avg", combination_type="linear")
    model.set_adapter("avg")
    for name in ["a", "b"]:
        model.delete_adapter(name)
    averaged = model.merge_and_unload().state_dict()
    assert max_diff(averaged, exact) > 1e-2


def test_gpt2_conv1d_fan_in_fan_out(tmp_path):
    tiny.save(tiny.tiny_model("gpt2", seed=0), tmp_path / "base")
    paths = [make_adapter(tmp_path / "base", tmp_path / f"a{i}", i + 1, r=2 + 2 * i, lora_alpha=4,
                          target_modules=["c_attn", "c_fc"], fan_in_fan_out=True) for i in range(2)]
    dense = AutoModelForCausalLM.from_pretrained(
        lines.merge(recipe(tmp_path, paths, [0.6, 0.4], {"alpha": 0.5, "beta": 0.5}), tmp_path / "d",
                    progress=False)).state_dict()
    soup = merged_full(tmp_path / "base", lines.merge(
        recipe(tmp_path, paths, [0.6, 0.4], {"alpha": 0.5, "beta": 0.5}, "adapter"), tmp_path / "s", progress=False))
    assert max_diff(soup, dense) <= 1e-5
    assert float((dense["transformer.h.2.attn.c_attn.weight"] -
                  AutoModelForCausalLM.from_pretrained(tmp_path / "base").state_dict()[
                      "transformer.h.2.attn.c_attn.weight"]).abs().max()) > 1e-3


def test_adapters_of_different_bases_are_refused(adapters, tmp_path):
    root, paths = adapters
    other = tmp_path / "other"
    import shutil

    same = tmp_path / "same"
    for source, target, base_name in [(paths[0], same, "org/sft-model"), (paths[1], other, "org/another-model")]:
        shutil.copytree(source, target)
        config = json.loads((target / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = base_name
        (target / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(lines.LinesError, match="must share θ0"):
        lines.merge(recipe(root, [same, other], [0.5, 0.5]), tmp_path / "out", progress=False)
    # A base whose shapes differ from the adapter's update is caught whatever the recorded name.
    tiny.save(tiny.tiny_model("llama", seed=0, hidden_size=32, intermediate_size=64), tmp_path / "wide")
    with pytest.raises(lines.LinesError, match="another base"):
        lines.merge(lines.parse_recipe({"base_model": str(tmp_path / "wide"),
                                        "models": [{"model": str(paths[0]), "weight": 1.0}]}), tmp_path / "o2",
                    progress=False)
    # The embedding base layer saved beside an embedding LoRA must be θ0's.
    tiny.save(tiny.tiny_model("llama", seed=99), tmp_path / "reinit")
    with pytest.raises(lines.LinesError, match="trained on another base"):
        lines.merge(lines.parse_recipe({"base_model": str(tmp_path / "reinit"),
                                        "models": [{"model": str(paths[0]), "weight": 1.0}]}), tmp_path / "o3",
                    progress=False)
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & {"out", "o2", "o3"} and not any(".tmp-" in n for n in left)


def test_adapter_output_needs_linear_methods_and_adapters(adapters, tmp_path):
    root, paths = adapters
    r = lines.parse_recipe({"base_model": str(root / "base"), "method": "ties", "parameters": {"density": 0.5},
                            "models": [{"model": str(p), "weight": 0.5} for p in paths], "output": "adapter"})
    with pytest.raises(lines.LinesError, match="exact only for linear, task_arithmetic"):
        lines.merge(r, tmp_path / "out", progress=False)
    # Dense TIES over adapters works: adapters are policies like any other.
    r = lines.parse_recipe({**r.model_dump(), "output": "dense"})
    assert (lines.merge(r, tmp_path / "ties", progress=False) / "model.safetensors").exists()
    assert LoraAdapter(paths[1]).modules["model.layers.1.self_attn.k_proj.weight"].scaling == pytest.approx(
        4 / 8 ** 0.5)  # rsLoRA: alpha/√r


def test_equal_ranks_and_modules_to_save(tmp_path):
    """Equal ranks, and a module saved whole beside the LoRA factors: dense and adapter outputs still agree;
    a module saved whole in one adapter but LoRA-adapted in another cannot be one adapter."""
    tiny.save(tiny.tiny_model("llama", seed=0), tmp_path / "base")
    paths = [make_adapter(tmp_path / "base", tmp_path / f"a{i}", i + 11, r=4, lora_alpha=4,
                          target_modules=["q_proj", "v_proj"], modules_to_save=["lm_head"]) for i in range(2)]
    state = load_file(paths[1] / "adapter_model.safetensors")
    assert "base_model.model.lm_head.weight" in state
    gen = torch.Generator().manual_seed(0)
    state["base_model.model.lm_head.weight"] += 0.1 * torch.randn(state["base_model.model.lm_head.weight"].shape,
                                                                  generator=gen)
    save_file(state, paths[1] / "adapter_model.safetensors", metadata={"format": "pt"})
    cfg = {"alpha": 0.3, "beta": 0.9, "head_depth": "last"}
    dense = AutoModelForCausalLM.from_pretrained(
        lines.merge(recipe(tmp_path, paths, [0.4, 0.6], cfg), tmp_path / "d", progress=False)).state_dict()
    soup_dir = lines.merge(recipe(tmp_path, paths, [0.4, 0.6], cfg, "adapter"), tmp_path / "s", progress=False)
    assert json.loads((soup_dir / "adapter_config.json").read_text())["modules_to_save"] == ["lm_head"]
    assert max_diff(merged_full(tmp_path / "base", soup_dir), dense) <= 1e-5
    base_head = AutoModelForCausalLM.from_pretrained(tmp_path / "base").state_dict()["lm_head.weight"]
    assert float((dense["lm_head.weight"] - base_head).abs().max()) > 1e-3  # the saved head was merged too
    conflicting = make_adapter(tmp_path / "base", tmp_path / "c", 5, r=2, lora_alpha=2, target_modules=["lm_head"])
    with pytest.raises(lines.LinesError, match="module_to_save here but a LoRA target"):
        lines.merge(recipe(tmp_path, [paths[0], conflicting], [0.5, 0.5], None, "adapter"), tmp_path / "x",
                    progress=False)
    assert not (tmp_path / "x").exists()
