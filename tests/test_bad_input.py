"""Bad input: one line naming the file/tensor and the fix, a non-zero exit, and no output left behind."""
import json
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import tiny
from lines.cli import main


@pytest.fixture()
def ckpts(tmp_path):
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, tmp_path / "base")
    for i in range(2):
        tiny.save(tiny.perturbed_copy(base, seed=i + 1), tmp_path / f"p{i}")
    return tmp_path


def edit_state(path, fn):
    file = path / "model.safetensors"
    state = load_file(file)
    fn(state)
    save_file(state, file, metadata={"format": "pt"})


def run_cli(root, capsys, *, extra_args=(), **recipe_fields):
    data = {"base_model": str(root / "base"),
            "models": [{"model": str(root / "p0"), "weight": 0.5}, {"model": str(root / "p1"), "weight": 0.5}],
            "lines": {"alpha": 0.5, "beta": 0.5}, **recipe_fields}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    capsys.readouterr()  # drop what building the fixtures printed
    code = main(["merge", str(path), str(root / "out"), "--quiet", *extra_args])
    err = capsys.readouterr().err.strip()
    return code, err


def assert_clean_failure(root, code, err, *needles):
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".out") or p.name == "out"]
    assert leftovers == []


def test_mismatched_shape(ckpts, capsys):
    edit_state(ckpts / "p1", lambda s: s.update({"model.norm.weight": torch.ones(17)}))
    code, err = run_cli(ckpts, capsys)
    assert_clean_failure(ckpts, code, err, "p1/model.safetensors", "'model.norm.weight'", "shape [17]")


def test_missing_and_extra_tensors(ckpts, capsys):
    edit_state(ckpts / "p0", lambda s: s.pop("model.layers.1.mlp.up_proj.weight"))
    code, err = run_cli(ckpts, capsys)
    assert_clean_failure(ckpts, code, err, "p0", "missing tensor 'model.layers.1.mlp.up_proj.weight'")
    edit_state(ckpts / "p0", lambda s: s.update({"model.layers.1.mlp.up_proj.weight": torch.zeros(32, 16),
                                                 "model.extra.weight": torch.zeros(2)}))
    code, err = run_cli(ckpts, capsys)
    assert_clean_failure(ckpts, code, err, "p0/model.safetensors", "extra tensor 'model.extra.weight'")


def test_different_architecture_and_layer_count(ckpts, capsys):
    tiny.save(tiny.tiny_model("gpt2"), ckpts / "gpt2")
    code, err = run_cli(ckpts, capsys, models=[{"model": str(ckpts / "gpt2"), "weight": 1.0}])
    assert_clean_failure(ckpts, code, err, "gpt2", "model_type 'gpt2' differs")
    tiny.save(tiny.tiny_model("llama", num_hidden_layers=4), ckpts / "deep")
    code, err = run_cli(ckpts, capsys, models=[{"model": str(ckpts / "deep"), "weight": 1.0}])
    assert_clean_failure(ckpts, code, err, "deep", "4 layers", "has 3")


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_values(ckpts, capsys, value):
    def poison(state):
        state["model.layers.2.self_attn.q_proj.weight"][0, 0] = value
    edit_state(ckpts / "p1", poison)
    code, err = run_cli(ckpts, capsys)
    assert_clean_failure(ckpts, code, err, "p1/model.safetensors", "'model.layers.2.self_attn.q_proj.weight'",
                         "non-finite")


@pytest.mark.parametrize("fields,needle", [
    ({"method": "slerp", "models": None}, "slerp merges exactly two"),
    ({"method": "ties"}, "field 'density' is required"),
    ({"method": "consensus", "parameters": {"k": 3}}, "k=3 exceeds"),
    ({"models": [{"model": "P0", "weight": -1.0}, {"model": "P1", "weight": 0.5}]}, "non-negative"),
    ({"lines": {"alpha": 0.5}}, "field 'lines'"),
    ({"lines": {"gamma": 0.5}}, "single-task edit of one policy"),
    ({"method": "magic"}, "field 'method'"),
])
def test_weights_and_parameters_that_do_not_fit(ckpts, capsys, fields, needle):
    if fields.get("models", "") is None:
        fields["models"] = [{"model": str(ckpts / f"p{i}"), "weight": 1.0} for i in range(2)] + [
            {"model": str(ckpts / "p0"), "weight": 1.0}]
    if "models" in fields:
        for m in fields["models"]:
            m["model"] = m["model"].replace("P0", str(ckpts / "p0")).replace("P1", str(ckpts / "p1"))
    code, err = run_cli(ckpts, capsys, **fields)
    assert_clean_failure(ckpts, code, err, "recipe.yaml", needle)


def test_truncated_and_corrupt_files(ckpts, capsys):
    file = ckpts / "p0" / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[:-100])
    code, err = run_cli(ckpts, capsys)
    assert_clean_failure(ckpts, code, err, "p0/model.safetensors", "truncated")
    file.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    code, err = run_cli(ckpts, capsys)
    assert_clean_failure(ckpts, code, err, "p0/model.safetensors", "corrupt")


def test_missing_paths_and_bad_index(ckpts, capsys):
    code, err = run_cli(ckpts, capsys, base_model=str(ckpts / "nowhere"))
    assert_clean_failure(ckpts, code, err, "nowhere", "not a directory")
    tiny.save(tiny.tiny_model("llama"), ckpts / "sh",
              max_shard_size="10KB")
    index = ckpts / "sh" / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())
    first = sorted(set(weight_map["weight_map"].values()))[0]
    (ckpts / "sh" / first).unlink()
    code, err = run_cli(ckpts, capsys, models=[{"model": str(ckpts / "sh"), "weight": 1.0}])
    assert_clean_failure(ckpts, code, err, "model.safetensors.index.json", f"shard '{first}'", "missing")


def test_unknown_architecture(ckpts, capsys):
    for name in ["base", "p0", "p1"]:
        config = json.loads((ckpts / name / "config.json").read_text())
        config["model_type"] = "mystery"
        (ckpts / name / "config.json").write_text(json.dumps(config))
    code, err = run_cli(ckpts, capsys)
    assert_clean_failure(ckpts, code, err, "base/config.json", "unknown architecture model_type='mystery'")


def test_unreadable_recipe(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text("base_model: [unclosed")
    assert main(["merge", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not valid YAML at line 1" in err and str(path) in err
    assert main(["merge", str(tmp_path / "none.yaml"), str(tmp_path / "out")]) == 2
    assert "recipe file" in (err := capsys.readouterr().err) and "does not exist" in err
