"""Layer maps on the real parameter names of locally built models of every supported family."""
import json
import re

import pytest

import tiny
from lines import layer_map as layer_map_module
from lines.errors import LinesError
from lines.layer_map import BLOCK, EMBEDDING, FINAL, HEAD, LayerMap, architecture_specs
from lines.schedule import LinesSchedule


def roles_of(model):
    layer_map = LayerMap.from_config(model.config.to_dict(), "test")
    return layer_map, {name: layer_map.role(name) for name in model.state_dict()}


@pytest.mark.parametrize("head", ["causal_lm", "seq_cls"])
@pytest.mark.parametrize("family", sorted(tiny.FAMILIES))
def test_every_parameter_has_a_role(family, head):
    model = tiny.tiny_model(family, head=head)
    layer_map, roles = roles_of(model)
    assert layer_map.num_layers == 3
    # Every block index appears, and the index in the role is the one in the name.
    layers = {r.layer for r in roles.values() if r.kind == BLOCK}
    assert layers == {0, 1, 2}
    for name, role in roles.items():
        if role.kind == BLOCK:
            assert re.search(rf"\.{role.layer}\.", name)
        else:
            assert not re.search(r"\.(layers|h)\.\d+\.", name)
    kinds = {r.kind for r in roles.values()}
    assert EMBEDDING in kinds and FINAL in kinds
    if head == "seq_cls":
        assert roles["score.weight"].kind == HEAD


def test_known_roles_for_llama_and_gpt2():
    _, llama = roles_of(tiny.tiny_model("llama"))
    assert llama["model.embed_tokens.weight"].kind == EMBEDDING
    assert llama["model.norm.weight"].kind == FINAL
    assert llama["lm_head.weight"].kind == HEAD
    assert llama["model.layers.2.mlp.down_proj.weight"].layer == 2
    _, gpt2 = roles_of(tiny.tiny_model("gpt2"))
    assert gpt2["transformer.wpe.weight"].kind == EMBEDDING
    assert gpt2["transformer.ln_f.bias"].kind == FINAL
    # GPT-2 ties lm_head to wte: the head is the embedding and must be scaled like it.
    assert gpt2["lm_head.weight"].kind == EMBEDDING
    # Old hub GPT-2 checkpoints have no 'transformer.' prefix.
    layer_map = LayerMap.from_config(tiny.tiny_config("gpt2").to_dict(), "test")
    assert layer_map.role("h.1.attn.c_attn.weight").layer == 1


def test_unknown_architecture_names_what_to_add():
    with pytest.raises(LinesError, match=r"unknown architecture model_type='mamba'.*add it to a file in"):
        LayerMap.from_config({"model_type": "mamba", "num_hidden_layers": 2}, "x/config.json")


def test_unknown_parameter_is_an_error_not_a_guess():
    layer_map = LayerMap.from_config(tiny.tiny_config("llama").to_dict(), "test")
    with pytest.raises(LinesError, match=r"'model.adapter.weight' matches no rule.*llama.json"):
        layer_map.role("model.adapter.weight")
    with pytest.raises(LinesError, match="block 7 but config.json declares 3 layers"):
        layer_map.role("model.layers.7.mlp.up_proj.weight")


def test_missing_layer_count_is_an_error():
    with pytest.raises(LinesError, match="layer count"):
        LayerMap.from_config({"model_type": "llama"}, "x/config.json")


def test_each_model_type_declared_once():
    """Read the JSON files directly: every model_type appears in exactly one file, which is the spec it maps to."""
    declared: dict[str, list[str]] = {}
    for path in sorted(layer_map_module.ARCHITECTURES_DIR.glob("*.json")):
        for model_type in json.loads(path.read_text())["model_types"]:
            declared.setdefault(model_type, []).append(path.stem)
    assert all(len(files) == 1 for files in declared.values()), declared
    specs = architecture_specs()
    assert {t: [spec.name] for t, spec in specs.items()} == declared
    assert set(tiny.FAMILIES) <= set(specs)


def test_a_model_type_declared_twice_is_refused(tmp_path, monkeypatch):
    source = layer_map_module.ARCHITECTURES_DIR / "llama.json"
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(source.read_text())
    monkeypatch.setattr(layer_map_module, "ARCHITECTURES_DIR", tmp_path)
    architecture_specs.cache_clear()
    try:
        with pytest.raises(LinesError, match="model_type 'llama' is declared twice"):
            architecture_specs()
    finally:
        monkeypatch.undo()
        architecture_specs.cache_clear()


def test_schedule_formula():
    s = LinesSchedule(alpha=0.2, beta=0.6, num_layers=4)
    assert s.layer_scales() == pytest.approx([0.2, 0.4, 0.6, 0.8])
    edit = LinesSchedule.single_task(gamma=0.25, num_layers=5)
    assert edit.layer_scale(0) == pytest.approx(0.25) and edit.layer_scale(4) == pytest.approx(1.0)
