"""Hostile checkpoints through `lines merge`: corrupt safetensors files, non-finite weights, absurd LoRA adapters,
pickles that would run code, and checkpoints that ship their own code.

Every case must be refused with one `error:` line naming the file (or tensor, or field) and the problem, exit 2,
and leave no output (tests/hostile.py); the counts go into the suite's summary. Each file is built by hand from a
valid one, so each test states exactly which defect it plants.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

import hostile
import tiny
from lines.cli import main as lines_main


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_models")
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, root / "base")
    tiny.save(tiny.perturbed_copy(base, seed=1), root / "policy")
    return root


def merge_with(root: Path, tmp: Path, policy: Path, category: str, extra_args=()) -> tuple[str, str]:
    recipe = tmp / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"base_model": str(root / "base"),
                                      "models": [{"model": str(policy), "weight": 1.0}]}))
    out = tmp / "out"
    return out, hostile.run_entry_point(category, lambda: lines_main(
        ["merge", str(recipe), str(out), "--quiet", *extra_args]), output=out, must_refuse=True)[1]


def copy_policy(root: Path, tmp: Path) -> Path:
    import shutil

    return Path(shutil.copytree(root / "policy", tmp / "policy"))


@pytest.mark.parametrize("where", ["under_a_file", "missing_proc_dir", "read_only_sysfs"])
def test_output_directory_that_cannot_be_created_is_one_line(models, tmp_path, where):
    out = {"under_a_file": tmp_path / "recipe.yaml" / "out", "missing_proc_dir": Path("/proc/no-such-dir/out"),
           "read_only_sysfs": Path("/sys/lines-out")}[where]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"base_model": str(models / "base"),
                                      "models": [{"model": str(models / "policy"), "weight": 1.0}]}))
    _, err = hostile.run_entry_point("output paths", lambda: lines_main(["merge", str(recipe), str(out), "--quiet"]),
                                     must_refuse=True)
    assert f"{out}: cannot create the output directory" in err, err


def test_export_mergekit_to_a_path_that_cannot_be_written_is_one_line(models, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"base_model": str(models / "base"),
                                      "models": [{"model": str(models / "policy"), "weight": 1.0}]}))
    out = recipe / "mergekit.yaml"
    _, err = hostile.run_entry_point("output paths", lambda: lines_main(["export-mergekit", str(recipe), "-o",
                                                                         str(out)]), must_refuse=True)
    assert f"{out}: cannot write the config there" in err, err


# -- safetensors files ----------------------------------------------------------------------------------------------

def split_file(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def header_bytes(text: str) -> bytes:
    encoded = text.encode()
    return struct.pack("<Q", len(encoded)) + encoded


def first_two(header: dict) -> tuple[str, str]:
    names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    return names[0], names[1]


def _overlap(h, d):
    a, b = first_two(h)
    h[b]["data_offsets"] = [h[a]["data_offsets"][0], h[a]["data_offsets"][0] + h[b]["data_offsets"][1]
                            - h[b]["data_offsets"][0]]
    return json.dumps(h), d


def last_name(header: dict) -> str:
    return max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def _out_of_range(h, d):
    last = last_name(h)
    h[last]["data_offsets"] = [x + 64 for x in h[last]["data_offsets"]]
    return json.dumps(h), d


def _gap(h, d):
    """Eight unused bytes inside the data section, every later tensor moved past them (sizes still add up)."""
    a, _ = first_two(h)
    cut = h[a]["data_offsets"][1]
    for name, entry in h.items():
        if name != "__metadata__" and entry["data_offsets"][0] >= cut:
            entry["data_offsets"] = [x + 8 for x in entry["data_offsets"]]
    return json.dumps(h), d[:cut] + b"\x00" * 8 + d[cut:]


def _duplicate(h, d):
    a, b = first_two(h)
    text = json.dumps(h)
    # The same name twice: the JSON keeps both entries, a plain json.loads would silently keep the second.
    return text.replace(json.dumps(b) + ":", json.dumps(a) + ":", 1), d


def _set(name_index: int, field: str, value):
    def edit(h, d):
        names = first_two(h)
        h[names[name_index]][field] = value
        return json.dumps(h), d
    return edit


# (case id, edit of (header dict, data bytes) -> (header text, data bytes) or raw file bytes, words the error has)
SAFETENSORS_CASES = [
    ("header_length_beyond_file", lambda h, d: struct.pack("<Q", 10 ** 6) + b"{}", "does not fit"),
    ("header_length_2_63", lambda h, d: struct.pack("<Q", 2 ** 63) + b"{}", "does not fit"),
    ("shorter_than_length_field", lambda h, d: b"\x01\x02", "shorter than the 8-byte"),
    ("non_json_header", lambda h, d: header_bytes("{not json") + d, "corrupt safetensors"),
    ("invalid_utf8_header", lambda h, d: struct.pack("<Q", 4) + b"\xff\xfe{}" + d, "corrupt safetensors"),
    ("header_is_a_list", lambda h, d: header_bytes("[1, 2]") + d, "not an object"),
    ("metadata_not_a_mapping", lambda h, d: (json.dumps({**h, "__metadata__": [1]}), d), "__metadata__"),
    ("metadata_false", lambda h, d: (json.dumps({**h, "__metadata__": False}), d), "__metadata__"),
    ("metadata_value_not_a_string", lambda h, d: (json.dumps({**h, "__metadata__": {"format": None}}), d),
     "__metadata__"),
    ("entry_not_a_mapping", lambda h, d: (json.dumps({**h, first_two(h)[0]: 5}), d), "header entry"),
    ("entry_extra_field", _set(0, "sha", "x"), "header entry"),
    ("unknown_dtype", _set(0, "dtype", "F128"), "unknown dtype 'F128'"),
    ("dtype_not_a_string", _set(0, "dtype", 7), "unknown dtype"),
    ("negative_dimension", _set(0, "shape", [-16, -1]), "not a list of non-negative integers"),
    ("boolean_dimension", _set(0, "shape", [True, 16]), "not a list of non-negative integers"),
    ("shape_disagrees_with_bytes", _set(0, "shape", [3, 3]), "needs"),
    ("huge_shape", _set(0, "shape", [2 ** 40, 2 ** 40]), "needs"),
    ("offsets_reversed", _set(0, "data_offsets", [64, 0]), "data_offsets"),
    ("offsets_negative", _set(0, "data_offsets", [-64, 0]), "data_offsets"),
    ("offsets_not_a_pair", _set(0, "data_offsets", [0]), "data_offsets"),
    ("offsets_floats", _set(0, "data_offsets", [0.0, 64.0]), "data_offsets"),
    ("overlapping_offsets", _overlap, "overlapping"),
    ("offsets_past_the_end", _out_of_range, "past the end"),
    ("duplicate_tensor_name", _duplicate, "twice"),
    ("gap_between_tensors", _gap, "belong to no tensor"),
    ("bytes_after_the_last_tensor", lambda h, d: (json.dumps(h), d + b"\x00" * 8), "does not match its header"),
    ("truncated_data", lambda h, d: (json.dumps(h), d[:-3]), "truncated"),
]


@pytest.mark.parametrize("case,edit,needle", SAFETENSORS_CASES, ids=[c[0] for c in SAFETENSORS_CASES])
def test_corrupt_safetensors_refused_naming_file_and_problem(models, tmp_path, case, edit, needle):
    policy = copy_policy(models, tmp_path)
    file = policy / "model.safetensors"
    header, data = split_file(file)
    result = edit(header, data)
    raw = header_bytes(result[0]) + result[1] if isinstance(result, tuple) else result
    file.write_bytes(raw)
    _, err = merge_with(models, tmp_path, policy, "safetensors files")
    assert str(file) in err and needle in err, err


# -- model configs ----------------------------------------------------------------------------------------------------

CONFIG_CASES = [
    ("config_a_list", lambda c: [1], "JSON object"),
    ("config_null", lambda c: None, "JSON object"),
    ("config_not_json", None, "unreadable JSON"),
    ("layer_count_a_bool", lambda c: {**c, "num_hidden_layers": True}, "positive integer layer count"),
    ("layer_count_negative", lambda c: {**c, "num_hidden_layers": -3}, "positive integer layer count"),
    ("layer_count_huge", lambda c: {**c, "num_hidden_layers": 10 ** 9}, "1000000000 layers"),
    ("model_type_missing", lambda c: {k: v for k, v in c.items() if k != "model_type"}, "model_type"),
]


@pytest.mark.parametrize("case,edit,needle", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_model_configs_refused_with_one_line(models, tmp_path, case, edit, needle):
    policy = copy_policy(models, tmp_path)
    config = policy / "config.json"
    if edit is None:
        config.write_text("{model_type: llama")
    else:
        config.write_text(json.dumps(edit(json.loads(config.read_text()))))
    _, err = merge_with(models, tmp_path, policy, "model configs")
    assert str(policy) in err and needle in err, err


@pytest.mark.parametrize("shard", ["../policy/model.safetensors", "/etc/hostname", "..", "", 7])
def test_shard_index_pointing_outside_the_checkpoint_refused(models, tmp_path, shard):
    policy = copy_policy(models, tmp_path)
    names = list(split_file(policy / "model.safetensors")[0])
    (policy / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {}, "weight_map": {n: shard for n in names if n != "__metadata__"}}))
    _, err = merge_with(models, tmp_path, policy, "safetensors files")
    assert "model.safetensors.index.json" in err and ("shard" in err or "weight_map" in err), err


# -- non-finite weights -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_non_finite_weights_refused_naming_the_tensor(models, tmp_path, value, dtype):
    from safetensors.torch import load_file

    policy = copy_policy(models, tmp_path)
    file = policy / "model.safetensors"
    state = {k: v.to(dtype) for k, v in load_file(file).items()}
    state["model.layers.1.mlp.down_proj.weight"][3, 5] = value
    save_file(state, str(file), metadata={"format": "pt"})
    _, err = merge_with(models, tmp_path, policy, "non-finite weights")
    assert "'model.layers.1.mlp.down_proj.weight'" in err and "non-finite" in err and str(file) in err, err


# -- LoRA adapters --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def adapter(models):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(models / "base")
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(models / "adapter")
    return models / "adapter"


def edit_config(fields):
    def edit(path: Path):
        config = json.loads((path / "adapter_config.json").read_text())
        config.update(fields)
        (path / "adapter_config.json").write_text(json.dumps(config))
    return edit


def edit_factors(fn):
    def edit(path: Path):
        from safetensors.torch import load_file

        file = path / "adapter_model.safetensors"
        state = load_file(file)
        fn(state)
        save_file(state, str(file), metadata={"format": "pt"})
    return edit


def _rank_beyond_layer(state):
    # q_proj is 16 -> 16: rank 20 factors (and the config saying so) exceed the layer.
    for key in list(state):
        if "q_proj.lora_A" in key:
            state[key] = torch.randn(20, 16)
        elif "q_proj.lora_B" in key:
            state[key] = torch.randn(16, 20)


def _factors_disagree(state):
    key = next(k for k in state if "lora_B" in k)
    state[key] = torch.randn(state[key].shape[0], 3)


def _nan_factor(state):
    key = next(k for k in state if "lora_B" in k)
    state[key][0, 0] = float("nan")


ADAPTER_CASES = [
    ("rank_zero", edit_config({"r": 0}), "r is 0;"),
    ("rank_negative", edit_config({"r": -4}), "a LoRA rank is an integer >= 1"),
    ("rank_a_string", edit_config({"r": "4"}), "a LoRA rank is an integer >= 1"),
    ("rank_a_float", edit_config({"r": 4.5}), "a LoRA rank is an integer >= 1"),
    ("rank_a_bool", edit_config({"r": True}), "a LoRA rank is an integer >= 1"),
    ("rank_disagrees_with_factors", edit_config({"r": 4096}), "declares rank 4096"),
    ("rank_pattern_negative", edit_config({"rank_pattern": {"q_proj": -1}}), "rank_pattern"),
    ("alpha_zero", edit_config({"lora_alpha": 0}), "lora_alpha"),
    ("alpha_nan", edit_config({"lora_alpha": float("nan")}), "lora_alpha"),
    ("alpha_a_string", edit_config({"lora_alpha": "8"}), "lora_alpha"),
    ("target_module_absent", edit_config({"target_modules": ["q_proj", "gate_projection"]}), "'gate_projection'"),
    ("target_regex_matches_nothing", edit_config({"target_modules": r".*\.attn_c\..*"}), "target_modules"),
    ("target_modules_wrong_type", edit_config({"target_modules": 5}), "target_modules"),
    ("peft_type_not_lora", edit_config({"peft_type": "IA3"}), "holds no weights for some modules its IA3 config adapts"),
    ("config_not_an_object", lambda p: (p / "adapter_config.json").write_text("[1]"), "JSON object"),
    ("config_not_json", lambda p: (p / "adapter_config.json").write_text("{r: 4"), "unreadable adapter config"),
    ("rank_larger_than_layer", lambda p: (edit_factors(_rank_beyond_layer)(p), edit_config({"rank_pattern": {"q_proj": 20}})(p)),
     "larger than its layer"),
    ("factor_ranks_disagree", edit_factors(_factors_disagree), "one rank r >= 1"),
    ("non_finite_factor", edit_factors(_nan_factor), "non-finite"),
    ("peft_type_prompt", edit_config({"peft_type": "PROMPT_TUNING"}), "a PROMPT_TUNING adapter changes what the model is fed"),
]


@pytest.mark.parametrize("case,edit,needle", ADAPTER_CASES, ids=[c[0] for c in ADAPTER_CASES])
def test_absurd_adapters_refused_with_one_line(models, adapter, tmp_path, case, edit, needle):
    import shutil

    policy = Path(shutil.copytree(adapter, tmp_path / "adapter"))
    edit(policy)
    out, err = merge_with(models, tmp_path, policy, "adapter configs")
    assert str(policy) in err and needle in err, err


def test_valid_adapter_merges(models, adapter, tmp_path):
    """The adapter the cases above damage is itself accepted (so each refusal is due to its one defect)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"base_model": str(models / "base"),
                                      "models": [{"model": str(adapter), "weight": 1.0}]}))
    assert lines_main(["merge", str(recipe), str(tmp_path / "out"), "--quiet"]) == 0


def test_training_stage_refuses_the_same_adapters(models, adapter, tmp_path):
    """The training stage's loader of given adapters applies the same rules (one home: lines.lora)."""
    import shutil

    from pipelines.training.loaded import check_adapter

    for case, edit, needle in [ADAPTER_CASES[0], ADAPTER_CASES[10], ADAPTER_CASES[16]]:
        policy = Path(shutil.copytree(adapter, tmp_path / case))
        edit(policy)
        message = hostile.refused_by("adapter configs", lambda: check_adapter(policy, models / "base", "policies[0]"))
        assert needle in message and "policies[0]" in message, message
    check_adapter(adapter, models / "base", "policies[0]")  # the undamaged adapter passes


# -- pickles ---------------------------------------------------------------------------------------------------------

class _CreatesAFile:
    """Unpickling this calls os.system: what a malicious pytorch_model.bin does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_pickle_checkpoint(root: Path, models: Path, marker: Path) -> Path:
    import shutil

    path = root / "pickled"
    path.mkdir()
    shutil.copy(models / "policy" / "config.json", path / "config.json")
    torch.save({"model.norm.weight": torch.ones(16), "payload": _CreatesAFile(marker)}, path / "pytorch_model.bin")
    return path


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_malicious_pickle_never_runs_through_lines_merge(models, tmp_path, allow_pickle):
    marker = tmp_path / "pickle_ran"
    policy = malicious_pickle_checkpoint(tmp_path, models, marker)
    _, err = merge_with(models, tmp_path, policy, "pickles", ["--allow-pickle"] if allow_pickle else [])
    assert not marker.exists(), "the pickle's code ran"
    assert str(policy) in err
    assert ("--allow-pickle" in err) if not allow_pickle else ("unreadable pickle checkpoint" in err), err


def test_the_malicious_pickle_does_run_code_when_unpickled_unsafely(models, tmp_path):
    """The planted payload is real: a plain unpickler (weights_only=False) runs it. Without this the two tests
    above would pass with a harmless file."""
    marker = tmp_path / "pickle_ran"
    policy = malicious_pickle_checkpoint(tmp_path, models, marker)
    torch.load(policy / "pytorch_model.bin", weights_only=False)
    assert marker.exists()


def test_malicious_pickle_never_runs_through_the_model_loader(models, tmp_path):
    from lines.models import load_causal_lm

    marker = tmp_path / "pickle_ran"
    policy = malicious_pickle_checkpoint(tmp_path, models, marker)
    message = hostile.refused_by("pickles", lambda: load_causal_lm(policy, "cpu", "float32", "policy"))
    assert "pickle weights only" in message and str(policy) in message
    assert not marker.exists()


def test_malicious_pickle_never_runs_through_a_reward_model(models, tmp_path):
    """Reward models on the hub often ship only pytorch_model.bin; transformers reads it with weights_only=True,
    which refuses the payload: one line, and the command never runs."""
    from reward_models.hf_reward_model import load_sequence_classifier

    marker = tmp_path / "pickle_ran"
    policy = malicious_pickle_checkpoint(tmp_path, models, marker)
    message = hostile.refused_by("pickles", lambda: load_sequence_classifier(
        str(policy), torch.device("cpu"), torch.float32, False, "rm"))
    assert "reward 'rm'" in message and not marker.exists(), message


# -- a checkpoint's own code ----------------------------------------------------------------------------------------

def checkpoint_with_custom_code(root: Path, models: Path, marker: Path, model_type: str = "llama") -> Path:
    import shutil

    path = Path(shutil.copytree(models / "base", root / "custom"))
    config = json.loads((path / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoConfig": "custom.CustomConfig",
                                                   "AutoModelForCausalLM": "custom.CustomModel"})
    (path / "config.json").write_text(json.dumps(config))
    (path / "custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        f"class CustomConfig(LlamaConfig):\n    model_type = {model_type!r}\n"
        "class CustomModel(LlamaForCausalLM):\n    config_class = CustomConfig\n")
    return path


@pytest.mark.parametrize("model_type", ["llama", "custom_arch"])
def test_auto_map_refused_unless_trusted(models, tmp_path, model_type):
    """With a known model_type transformers would quietly load its own class instead of the checkpoint's (a
    different model); with an unknown one it would need the code. Both are refused, naming the file."""
    from lines.models import load_causal_lm, refuse_remote_code

    marker = tmp_path / "code_ran"
    path = checkpoint_with_custom_code(tmp_path, models, marker, model_type)
    message = hostile.refused_by("remote code", lambda: load_causal_lm(path, "cpu", "float32", "policy"))
    assert "auto_map" in message and str(path / "config.json") in message, message
    assert not marker.exists()
    refuse_remote_code(path, "reward", trust_remote_code=True)  # the flag, where a config sets it, lets it through


def test_reward_model_with_custom_code_needs_its_flag(models, tmp_path):
    from reward_models.hf_reward_model import load_sequence_classifier

    marker = tmp_path / "code_ran"
    path = checkpoint_with_custom_code(tmp_path, models, marker)
    message = hostile.refused_by("remote code", lambda: load_sequence_classifier(
        str(path), torch.device("cpu"), torch.float32, False, "rm"))
    assert "auto_map" in message and "reward 'rm'" in message
    assert not marker.exists()


def test_every_model_loading_call_states_trust_remote_code():
    """Each from_pretrained / AutoConfig / AutoTokenizer / vllm engine call in the project passes
    trust_remote_code explicitly (False, or the config's flag), so a new call cannot silently inherit a default."""
    import ast

    root = Path(__file__).resolve().parents[1]
    loaders = {"from_pretrained"}
    missing = []
    for package in ("lines", "pipelines", "reward_models"):
        for file in (root / package).rglob("*.py"):
            tree = ast.parse(file.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
                if node.func.attr not in loaders or owner in ("PeftModel", "cls", "TransformersGenerator"):
                    continue  # peft loads adapters (no code); cls/TransformersGenerator are the project's own
                if not any(k.arg == "trust_remote_code" for k in node.keywords):
                    missing.append(f"{file.relative_to(root)}:{node.lineno}")
    assert missing == [], f"model loads without an explicit trust_remote_code: {missing}"


def test_vllm_engine_arguments_never_trust_remote_code():
    from pipelines.config.generation import GenerationConfig
    from pipelines.generation.vllm_support import engine_kwargs

    kwargs = engine_kwargs("some/model", GenerationConfig(backend="vllm"), None, "ext")
    assert kwargs["trust_remote_code"] is False
