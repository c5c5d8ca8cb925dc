"""Checkpoint I/O of the merge engine: sharding, dtypes, tied embeddings, in-memory merges, streaming blocks."""
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import lines
import tiny
from lines.engine import TensorMerger
from lines.recipe import MergeSpec
from lines.task_vectors import MergeInputs


def load_state(path):
    state = {}
    for file in sorted(path.glob("*.safetensors")):
        state.update(load_file(file))
    return state


def make(root, family="llama", shard=None, dtype=torch.float32, n=2):
    base = tiny.tiny_model(family, seed=0, dtype=dtype)
    tiny.save(base, root / "base", max_shard_size=shard)
    tiny.tiny_tokenizer(root / "base")
    for i in range(n):
        tiny.save(tiny.perturbed_copy(base, seed=i + 1), root / f"p{i}", max_shard_size=shard)
    return root


def recipe(root, n=2, **extra):
    weights = [0.3, 0.7, 0.5][:n]
    return lines.parse_recipe({"base_model": str(root / "base"),
                               "models": [{"model": str(root / f"p{i}"), "weight": w} for i, w in enumerate(weights)],
                               "lines": {"alpha": 0.3, "beta": 0.6}, **extra})


def test_sharded_and_unsharded_inputs_give_identical_outputs(tmp_path):
    single = make(tmp_path / "single")
    sharded = tmp_path / "sharded"
    for name in ["base", "p0", "p1"]:  # the same weights, re-saved in many shards
        AutoModelForCausalLM.from_pretrained(single / name).save_pretrained(sharded / name, max_shard_size="8KB")
    assert (sharded / "base" / "model.safetensors.index.json").exists()
    a = load_state(lines.merge(recipe(single), tmp_path / "a", progress=False))
    b = load_state(lines.merge(recipe(sharded), tmp_path / "b", progress=False))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_output_is_sharded_loadable_and_carries_side_files(tmp_path):
    root = make(tmp_path)
    out = lines.merge(recipe(root, max_shard_size="10KB"), tmp_path / "out", progress=False)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = set(index["weight_map"].values())
    assert len(files) > 1 and all((out / f).exists() for f in files)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in load_state(out).values())
    for side in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]:
        assert (out / side).exists(), side
    card = (out / "README.md").read_text()
    assert "α = 0.3" in card and str(root / "p1") in card and "weight: 0.7" in card
    model = AutoModelForCausalLM.from_pretrained(out)
    state = load_state(out)
    assert torch.equal(model.state_dict()["model.layers.1.mlp.up_proj.weight"],
                       state["model.layers.1.mlp.up_proj.weight"])
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_bf16_inputs_and_output_dtype(tmp_path):
    root = make(tmp_path, dtype=torch.bfloat16)
    out = lines.merge(recipe(root), tmp_path / "keep", progress=False)
    assert {t.dtype for t in load_state(out).values()} == {torch.bfloat16}
    out32 = lines.merge(recipe(root, dtype="float32"), tmp_path / "f32", progress=False)
    assert {t.dtype for t in load_state(out32).values()} == {torch.float32}
    assert json.loads((out32 / "config.json").read_text())["dtype"] == "float32"
    # bf16 output = fp32 result rounded once.
    a, b = load_state(out), load_state(out32)
    assert all(torch.equal(a[k], b[k].to(torch.bfloat16)) for k in a)


@pytest.mark.parametrize("family", ["gpt2", "gemma"])
def test_tied_embeddings_saved_twice_are_scaled_once(tmp_path, family):
    """Some checkpoints store the tied head as well: both copies must get the embedding's λ."""
    root = make(tmp_path, family=family)
    embed = "transformer.wte.weight" if family == "gpt2" else "model.embed_tokens.weight"
    for name in ["base", "p0", "p1"]:
        state = load_file(root / name / "model.safetensors")
        state["lm_head.weight"] = state[embed].clone()
        save_file(state, root / name / "model.safetensors", metadata={"format": "pt"})
    out = load_state(lines.merge(recipe(root, lines={"alpha": 0.2, "beta": 0.8, "head_depth": "last"}),
                                 tmp_path / "out", progress=False))
    assert torch.equal(out["lm_head.weight"], out[embed])


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "opt", "falcon", "phi3"])
def test_in_memory_merge_equals_disk_merge(tmp_path, family):
    root = make(tmp_path, family=family)
    r = recipe(root, lines={"alpha": "auto", "beta": 0.4})
    disk = AutoModelForCausalLM.from_pretrained(lines.merge(r, tmp_path / "out", progress=False))
    live = AutoModelForCausalLM.from_pretrained(root / "p0")  # any model of the family will do
    with MergeInputs(r.base_model, [m.model for m in r.models]) as inputs:
        applied = lines.merge_into_model(live, inputs, r.spec())
    assert applied.alpha_was_auto and applied.schedule.alpha > 0
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    with torch.no_grad():
        assert torch.equal(live(ids).logits, disk(ids).logits)
    for (name, a), b in zip(live.state_dict().items(), disk.state_dict().values()):
        assert torch.equal(a, b), name


def test_row_block_streaming_equals_whole_tensors(tmp_path):
    root = make(tmp_path)
    spec = MergeSpec(method="linear", weights=[0.3, 0.7], lines={"alpha": "auto", "beta": 0.5})
    with MergeInputs(root / "base", [root / "p0", root / "p1"]) as inputs:
        whole = TensorMerger(spec, inputs)
        blocked = TensorMerger(spec, inputs, block_elements=100)
        assert len(blocked.row_blocks("model.embed_tokens.weight")) > 1
        assert whole.resolve_lines(False).schedule.alpha == pytest.approx(
            blocked.resolve_lines(False).schedule.alpha, rel=1e-12)
        full = {n: t for n, _, t in whole.iter_merged(whole.resolve_lines(False), progress=False)}
        parts: dict = {}
        for name, rows, block in blocked.iter_merged(blocked.resolve_lines(False), progress=False):
            parts.setdefault(name, []).append(block)
    for name, tensor in full.items():
        assert torch.allclose(torch.cat(parts[name]), tensor, atol=1e-7, rtol=0), name


def test_pickle_checkpoints_refused_unless_allowed(tmp_path):
    root = make(tmp_path)
    for name in ["p0"]:
        state = load_file(root / name / "model.safetensors")
        (root / name / "model.safetensors").unlink()
        torch.save(state, root / name / "pytorch_model.bin")
    with pytest.raises(lines.LinesError, match="pickle .bin.*--allow-pickle"):
        lines.merge(recipe(root), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    out = lines.merge(recipe(root), tmp_path / "out", allow_pickle=True, progress=False)
    assert load_state(out)["model.norm.weight"].shape == (16,)


def test_cli_merge_and_force(tmp_path, capsys):
    from lines.cli import main

    root = make(tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(root).model_dump(mode="json")))
    assert main(["merge", str(path), str(tmp_path / "out"), "--quiet"]) == 0
    first = load_state(tmp_path / "out")
    assert main(["merge", str(path), str(tmp_path / "out"), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({**recipe(root).model_dump(mode="json"), "lines": None}))
    assert main(["merge", str(path), str(tmp_path / "out"), "--quiet", "--force"]) == 0
    second = load_state(tmp_path / "out")
    assert not torch.equal(first["model.layers.0.mlp.up_proj.weight"], second["model.layers.0.mlp.up_proj.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "out", "p0", "p1", "recipe.yaml"]


def test_iter_merged_tensors_gives_whole_tensors_equal_to_the_disk_merge(tmp_path, monkeypatch):
    import importlib

    root = make(tmp_path)
    r = recipe(root)
    disk = load_state(lines.merge(r, tmp_path / "out", progress=False))
    merge_module = importlib.import_module("lines.merge")
    original = merge_module.TensorMerger
    monkeypatch.setattr(merge_module, "TensorMerger",
                        lambda spec, inp, block_elements=None, **kw: original(spec, inp, block_elements=64, **kw))
    with MergeInputs(r.base_model, [m.model for m in r.models]) as inputs:
        assert len(original(r.spec(), inputs, block_elements=64).row_blocks("model.embed_tokens.weight")) > 1
        streamed = dict(lines.iter_merged_tensors(inputs, r.spec()))
    assert streamed.keys() == disk.keys()
    assert all(torch.equal(streamed[k], disk[k]) for k in disk)


def test_layer_diagnostics_against_direct_computation(tmp_path):
    root = make(tmp_path)
    base, p0, p1 = (load_state(root / n) for n in ["base", "p0", "p1"])
    with MergeInputs(root / "base", [root / "p0", root / "p1"]) as inputs:
        diag = lines.layer_diagnostics(inputs)
    assert diag.groups == [0, 1, 2, "outside"]
    keys = [k for k in base if ".layers.1." in k]
    t0 = torch.cat([(p0[k] - base[k]).double().flatten() for k in keys])
    t1 = torch.cat([(p1[k] - base[k]).double().flatten() for k in keys])
    assert diag.norms[1][0] == pytest.approx(float(t0.norm()), rel=1e-6)
    assert diag.cosines[1][0][1] == pytest.approx(float(t0 @ t1 / (t0.norm() * t1.norm())), abs=1e-6)
    assert diag.cosines[1][0][0] == pytest.approx(1.0)
