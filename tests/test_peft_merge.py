"""Adapters whose update is not linear in their factors (DoRA, LoHa): soups through peft's own merge_and_unload, equal
to the soup of peft's merged policies; the adapter route refused for them in one line saying why; adapters peft
cannot merge refused naming their type."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from peft import LoHaConfig, LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

import lines
import tiny
from lines.checkpoint import Checkpoint
from lines.cli import main as lines_main
from lines.errors import LinesError
from lines.task_vectors import MergeInputs

ADAPTERS = {  # name -> peft config: DoRA with unequal ranks and targets, rsLoRA-DoRA, and a LoHa
    "dora": LoraConfig(r=4, lora_alpha=8, use_dora=True, init_lora_weights=False,
                       target_modules=["q_proj", "v_proj", "up_proj"]),
    "dora-rslora": LoraConfig(r=2, lora_alpha=4, use_dora=True, use_rslora=True, init_lora_weights=False,
                              target_modules=["q_proj", "k_proj", "down_proj"]),
    "loha": LoHaConfig(r=2, alpha=4, init_weights=False, target_modules=["q_proj", "o_proj"]),
}


def make_adapter(base_dir: Path, out_dir: Path, seed: int, config) -> Path:
    """An adapter whose every factor (and DoRA magnitude) is moved by seeded noise, so each one matters."""
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("peft-merge")
    tiny.save(tiny.tiny_model("llama", seed=0), root / "base")
    tiny.tiny_tokenizer(root / "base")
    paths = {name: make_adapter(root / "base", root / name, i + 1, config)
             for i, (name, config) in enumerate(ADAPTERS.items())}
    return root, paths


def peft_merged(base_dir: Path, adapter_dir: Path) -> dict[str, np.ndarray]:
    """θ_i by peft itself (θ0 loaded in fp32), in fp64."""
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
                                      str(adapter_dir))
    return {k: v.double().numpy() for k, v in model.merge_and_unload().state_dict().items()}


def load(path) -> dict[str, np.ndarray]:
    checkpoint = Checkpoint(path)
    try:
        return {name: checkpoint.read(name).double().numpy() for name in checkpoint.tensors}
    finally:
        checkpoint.close()


def test_soup_equals_the_soup_of_peft_merges(policies, tmp_path):
    """θ0 + Σ w_i (θ_i − θ0) in fp64 from peft's merge_and_unload of each adapter, a DoRA adapter and a LoHa beside a
    plain full policy; with LiNeS on top the same reference scaled per depth."""
    root, paths = policies
    full = tiny.save(tiny.perturbed_copy(AutoModelForCausalLM.from_pretrained(root / "base"), seed=7), root / "full")
    models = [paths["dora"], paths["dora-rslora"], paths["loha"], full]
    weights = [0.5, 0.2, 0.4, -0.1]
    recipe = {"base_model": str(root / "base"), "method": "task_arithmetic", "compute_dtype": "float64",
              "dtype": "float64", "models": [{"model": str(p), "weight": w} for p, w in zip(models, weights)]}
    merged = load(lines.merge(lines.parse_recipe(recipe), tmp_path / "out", progress=False))

    base = load(root / "base")
    thetas = [peft_merged(root / "base", p) for p in models[:3]] + [load(full)]
    expected = {n: base[n] + sum(w * (t[n] - base[n]) for w, t in zip(weights, thetas)) for n in base}
    assert set(merged) == set(expected)
    assert max(float(np.abs(merged[n] - expected[n]).max()) for n in expected) <= 1e-12
    adapted = "model.layers.0.self_attn.q_proj.weight"
    assert float(np.abs(thetas[0][adapted] - base[adapted]).max()) > 1e-2  # the adapters did move θ0


def test_merged_policy_is_peft_merge_and_its_files_go(policies):
    root, paths = policies
    with MergeInputs(root / "base", [paths["dora"]]) as inputs:
        (policy,) = inputs.peft_merged
        assert policy.kind == "DoRA" and policy.path == paths["dora"] and not inputs.adapters
        expected = peft_merged(root / "base", paths["dora"])
        assert all(np.array_equal(policy.read(n).double().numpy(), expected[n]) for n in policy.tensors)
        merged_dir = policy.merged_dir
    assert not merged_dir.exists()


def test_adapter_output_refused_saying_why(policies, tmp_path, capsys):
    root, paths = policies
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"base_model": str(root / "base"), "output": "adapter",
                                    "models": [{"model": str(paths["dora"]), "weight": 1.0}]}))
    assert lines_main(["merge", str(path), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"{paths['dora']} is a DoRA adapter, whose update is not (peft merges it into θ0)" in err
    assert not (tmp_path / "out").exists()


def test_sweep_adapter_route_refused_saying_why(policies):
    from pipelines.errors import PipelineError
    from pipelines.generation.protocol import Capabilities
    from pipelines.sweep.routing import Router

    CAPS = Capabilities(dense_weights=True, lora_adapters=True, max_points_per_call=None, max_lora_rank=None,
                        policy_model=True)
    root, paths = policies
    with MergeInputs(root / "base", [paths["dora"]]) as inputs:
        with pytest.raises(PipelineError, match="sweep.lora_route: adapter needs every policy's update to be linear "
                                                "in its adapter factors, and .* is a DoRA adapter"):
            Router(CAPS, inputs, "adapter")
        assert not Router(CAPS, inputs, "auto").adapters  # auto: dense


@pytest.mark.parametrize("peft_type,needle", [
    ("PREFIX_TUNING", "a PREFIX_TUNING adapter changes what the model is fed (virtual tokens or prompts), not its "
                      "weights"),
    ("NO_SUCH_TYPE", "peft_type 'NO_SUCH_TYPE' is no adapter type peft knows"),
])
def test_adapter_peft_cannot_merge_is_refused_naming_its_type(policies, tmp_path, peft_type, needle):
    root, paths = policies
    adapter = Path(shutil.copytree(paths["dora"], tmp_path / "adapter"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "peft_type": peft_type}))
    with pytest.raises(LinesError, match=re.escape(needle)):
        MergeInputs(root / "base", [adapter])


def test_failed_inputs_leave_no_merged_copy(policies, tmp_path, monkeypatch):
    """A policy after the DoRA one fails to open: the copy peft merged is removed with the rest."""
    root, paths = policies
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with pytest.raises(LinesError, match="not a directory"):
        MergeInputs(root / "base", [paths["dora"], tmp_path / "missing"])
    assert not list(tmp_path.glob("lines-peft-merged-*"))


def test_run_config_with_adapter_route_refused_saying_why(policies, tmp_path, capsys):
    """The same refusal when the config is read, before any work: one line naming the policy and the reason."""
    import sweep_fixtures as sf
    from pipelines.merge_policies import main

    root, paths = policies
    inputs = sf.build_sweep_inputs(tmp_path / "inputs")
    config = sf.sweep_config(tmp_path, {**inputs, "base": root / "base",
                                        "policies": [paths["dora"], paths["dora-rslora"]]})
    data = yaml.safe_load(config.read_text())
    data["sweep"]["lora_route"] = "adapter"
    config.write_text(yaml.safe_dump(data))
    assert main(["--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sweep.lora_route is adapter but policies.long is a DoRA adapter, whose " \
                                   "update is not linear in its factors" in err, err
    assert not (tmp_path / "runs").exists()
