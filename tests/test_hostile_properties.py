"""Property-based hostile inputs: valid merge recipes, run configs and prompt files, mutated by hypothesis.

Each example starts from a valid input and applies one to three mutations: a value replaced by a value of the wrong
type or out of range (None, bools, huge integers, NaN/inf, unicode, path escapes, 10k-character strings, lists,
mappings), a key removed, an unknown key added, or the file's bytes truncated or made invalid UTF-8. The entry
point must either succeed or print exactly one `error:` line, exit 2 and leave nothing in its output location
(tests/hostile.py checks and counts that). Each property also checks that it saw both outcomes, so a base input
that is already invalid (everything refused) or a check that refuses nothing cannot pass unnoticed.
"""
from __future__ import annotations

import copy
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import hostile
import sweep_fixtures
import tiny
from lines.cli import main as lines_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
from pipelines import merge_policies  # noqa: E402

# Example counts: bounded so that each property runs in well under a minute on a shared 2-core machine.
RECIPE_EXAMPLES = 300
RUN_CONFIG_EXAMPLES = 300
PROMPT_FILE_EXAMPLES = 200
HEADER_EXAMPLES = 300

HOSTILE_STRINGS = ["", " ", "../..", "../../etc", "/etc", "/", "~", ".", "..", "a/b", "nan", "inf", "-1", "0",
                   "1e309", "auto", "null", "true", "💥🧪", "ǅ\u200b\u202e", "\x00", "a" * 10_000, "{}", "[1, 2]",
                   "linear", "float16", "C:\\x"]


def hostile_values() -> st.SearchStrategy:
    """Values of the wrong type, out of range or unusual: what a typo, a bad script or a hostile file produces."""
    scalar = st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
        st.sampled_from([0, -1, 1, 2, 3, 10 ** 9, 10 ** 18, -(10 ** 12)]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e-300, 1e308, -1e-9, 0.5, 1.5]),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=12),
    )
    return st.one_of(scalar, st.lists(scalar, max_size=4), st.dictionaries(st.text(max_size=6), scalar, max_size=3))


def paths_in(data, prefix=()) -> list[tuple]:
    """Every key path (dict keys and list indices) in a nested structure."""
    out = []
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return out
    for key, value in items:
        out.append(prefix + (key,))
        out += paths_in(value, prefix + (key,))
    return out


def containers_in(data, prefix=()) -> list[tuple]:
    """Paths of every mapping (where an unknown key can be added), the root included."""
    out = [prefix] if isinstance(data, dict) else []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else []
    for key, value in items:
        out += containers_in(value, prefix + (key,))
    return out


def at(data, path):
    for key in path:
        data = data[key]
    return data


@st.composite
def mutated(draw, valid: dict) -> dict:
    """`valid` with one to three structural mutations."""
    data = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "replace", "delete", "add", "scale"]))
        paths = paths_in(data)
        if kind == "add" or not paths:
            where = at(data, draw(st.sampled_from(containers_in(data))))
            where[draw(st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["extends", "__proto__"])))] = \
                draw(hostile_values())
            continue
        path = draw(st.sampled_from(paths))
        parent, key = at(data, path[:-1]), path[-1]
        if kind == "delete":
            del parent[key]
        elif kind == "scale" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = parent[key] * draw(st.sampled_from([-1, 0, 1e6, 1e300, 0.5])) + draw(
                st.sampled_from([0, 1, -1]))
        else:
            parent[key] = draw(hostile_values())
    return data


@st.composite
def file_bytes(draw, valid: dict) -> bytes:
    """A YAML file of a mutated config, or (one example in five) a valid file's bytes damaged."""
    if draw(st.integers(0, 4)) == 0:
        text = yaml.safe_dump(valid, allow_unicode=True).encode()
        damage = draw(st.sampled_from(["truncate", "invalid_utf8", "garbage"]))
        if damage == "truncate":
            return text[:draw(st.integers(0, len(text)))]
        if damage == "invalid_utf8":
            cut = draw(st.integers(0, len(text)))
            return text[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + text[cut:]
        return draw(st.binary(max_size=200))
    data = draw(mutated(valid))
    try:
        return yaml.safe_dump(data, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, ValueError):  # not representable as YAML: write it as JSON (also YAML)
        return json.dumps(data, default=str).encode("utf-8", "surrogatepass")


def check_saw_both(category: str, before: dict) -> None:
    counts = hostile.COUNTS[category]
    refused = counts[hostile.REFUSED] - before.get(hostile.REFUSED, 0)
    accepted = counts[hostile.ACCEPTED] - before.get(hostile.ACCEPTED, 0)
    assert refused > 0 and accepted > 0, f"{category}: {refused} refused, {accepted} accepted; the property is vacuous"


# -- merge recipes through `lines merge` --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_ckpts")
    base = tiny.tiny_model("llama", seed=0)
    tiny.save(base, root / "base")
    for i in range(2):
        tiny.save(tiny.perturbed_copy(base, seed=i + 1), root / f"p{i}")
    return root


def valid_recipes(root: Path) -> list[dict]:
    models = [{"model": str(root / "p0"), "weight": 0.4}, {"model": str(root / "p1"), "weight": 0.6}]
    return [
        {"base_model": str(root / "base"), "models": models, "method": "linear",
         "lines": {"alpha": 0.5, "beta": 0.5}, "dtype": "float32", "seed": 0, "max_shard_size": "2GB"},
        {"base_model": str(root / "base"), "models": models, "method": "ties", "parameters": {"density": 0.5},
         "lines": {"alpha": "auto", "beta": 1.0, "head_depth": "last"}, "compute_dtype": "float64"},
        {"base_model": str(root / "base"), "models": models[:1], "method": "task_arithmetic",
         "lines": {"gamma": 0.3}},
    ]


@pytest.mark.slow  # about half a minute each on a shared 2-core machine
def test_recipes_merge_or_refuse_with_one_line(checkpoints, tmp_path_factory):
    before = dict(hostile.COUNTS["recipes"])
    work = tmp_path_factory.mktemp("recipes")

    @settings(max_examples=RECIPE_EXAMPLES)
    @given(data=st.data())
    def merge_one(data):
        text = data.draw(file_bytes(data.draw(st.sampled_from(valid_recipes(checkpoints)))))
        case = Path(tempfile_dir(work))
        recipe, out = case / "recipe.yaml", case / "out"
        recipe.write_bytes(text)
        outcome, _ = hostile.run_entry_point("recipes", lambda: lines_main(["merge", str(recipe), str(out), "--quiet"]),
                                             output=out)
        if outcome == hostile.ACCEPTED:
            assert (out / "model.safetensors").is_file()
        shutil.rmtree(case)

    merge_one()
    check_saw_both("recipes", before)


def tempfile_dir(parent: Path) -> str:
    import tempfile

    return tempfile.mkdtemp(dir=parent)


# -- run configs through `merge_policies.py --check` --------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_sweep")
    return root, sweep_fixtures.build_sweep_inputs(root)


def valid_run_config(root: Path, paths: dict) -> dict:
    return yaml.safe_load(sweep_fixtures.sweep_config(root / "valid", paths).read_text())


def demo_run_config() -> dict:
    """The shipped demo config: a training section (SFT θ0, DPO policies), metrics on the control domain."""
    from pipelines.config.overrides import read_config

    return read_config(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml")


@pytest.mark.slow  # about half a minute each on a shared 2-core machine
def test_run_configs_check_or_refuse_with_one_line(sweep_inputs, tmp_path_factory):
    root, paths = sweep_inputs
    valids = [valid_run_config(root, paths), demo_run_config()]
    before = dict(hostile.COUNTS["run configs"])
    work = tmp_path_factory.mktemp("run_configs")

    @settings(max_examples=RUN_CONFIG_EXAMPLES)
    @given(data=st.data())
    def check_one(data):
        case = Path(tempfile_dir(work))
        config = case / "config.yaml"
        base = {**data.draw(st.sampled_from(valids)), "output_dir": str(case / "runs")}
        config.write_bytes(data.draw(file_bytes(base)))
        run_dir = case / "runs"
        hostile.run_entry_point("run configs", lambda: merge_policies.main(["--config", str(config), "--check"]),
                                output=run_dir)
        assert not run_dir.exists(), "--check wrote into the output directory"
        shutil.rmtree(case)

    check_one()
    check_saw_both("run configs", before)


# -- prompt files, read by the run config check -------------------------------------------------------------------

GOOD_PROMPTS = [{"id": f"p{i}", "prompt": p} for i, p in enumerate(sweep_fixtures.PROMPTS)]


@st.composite
def prompt_file(draw) -> tuple[str, bytes]:
    """(suffix, content): the fixture's prompts as JSONL, CSV or TXT with rows mutated, or bytes damaged."""
    suffix = draw(st.sampled_from([".jsonl", ".jsonl", ".csv", ".txt"]))
    rows = copy.deepcopy(GOOD_PROMPTS)
    for _ in range(draw(st.integers(0, 3))):
        row = rows[draw(st.integers(0, len(rows) - 1))]
        kind = draw(st.sampled_from(["prompt", "prompt", "id", "drop_field", "drop_row"]))
        if kind == "prompt":
            row["prompt"] = draw(st.one_of(hostile_values(), st.sampled_from(["", "   ", "\t\n", "\u3000"])))
        elif kind == "id":
            row["id"] = draw(st.one_of(hostile_values(), st.just(rows[0]["id"])))
        elif kind == "drop_field":
            row.pop(draw(st.sampled_from(["id", "prompt"])), None)
        elif len(rows) > 1:
            rows.remove(row)
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, default=str) + "\n" for r in rows).encode("utf-8", "surrogatepass")
    elif suffix == ".csv":
        text = ("id,prompt\n" + "".join(f"{r.get('id', '')},\"{str(r.get('prompt', '')).replace(chr(34), '')}\"\n"
                                        for r in rows)).encode("utf-8", "surrogatepass")
    else:
        text = "".join(f"{str(r.get('prompt', ''))}\n" for r in rows).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"\"", b"\n\n"])) + \
            text[cut:]
    return suffix, text


@pytest.mark.slow  # about half a minute each on a shared 2-core machine
def test_prompt_files_are_read_or_refused_with_file_and_line(sweep_inputs, tmp_path_factory):
    root, paths = sweep_inputs
    valid = valid_run_config(root, paths)
    before = dict(hostile.COUNTS["prompt files"])
    work = tmp_path_factory.mktemp("prompt_files")

    @settings(max_examples=PROMPT_FILE_EXAMPLES)
    @given(file=prompt_file())
    def check_one(file):
        suffix, content = file
        case = Path(tempfile_dir(work))
        prompts = case / f"prompts{suffix}"
        prompts.write_bytes(content)
        fields = {"path": str(prompts), "n_validation": 2, "n_eval": 4}
        if suffix != ".txt":
            fields["id_field"] = "id"
        if suffix == ".txt":
            fields["prompt_field"] = "text"
        config = case / "config.yaml"
        config.write_text(yaml.safe_dump({**valid, "output_dir": str(case / "runs"), "prompts": fields}))
        outcome, err = hostile.run_entry_point(
            "prompt files", lambda: merge_policies.main(["--config", str(config), "--check"]), output=case / "runs")
        if outcome == hostile.REFUSED and ("UTF-8" in err or "empty" in err):
            assert f"{prompts}:" in err, f"no file:line in {err}"
        shutil.rmtree(case)

    check_one()
    check_saw_both("prompt files", before)


# -- safetensors headers: a valid header's JSON mutated -------------------------------------------------------------

@pytest.fixture(scope="module")
def small_safetensors(tmp_path_factory):
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("header")
    file = root / "model.safetensors"
    save_file({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.float16),
               "c": torch.zeros(0, dtype=torch.int64)}, str(file), metadata={"format": "pt"})
    raw = file.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


@pytest.mark.slow  # about half a minute each on a shared 2-core machine
def test_safetensors_headers_are_validated_before_use(small_safetensors, tmp_path_factory):
    """Any header mutation is either a consistent file (then every tensor reads back) or one LinesError line."""
    from lines.checkpoint import read_safetensors_header
    from lines.errors import UserError

    header, data = small_safetensors
    work = tmp_path_factory.mktemp("headers")
    before = dict(hostile.COUNTS["safetensors headers"])

    @settings(max_examples=HEADER_EXAMPLES)
    @given(mutant=mutated(header), extra=st.sampled_from([b"", b"\x00" * 4]), cut=st.integers(0, 3))
    def parse_one(mutant, extra, cut):
        encoded = json.dumps(mutant).encode()
        body = data[:len(data) - cut] + extra
        file = work / "m.safetensors"
        file.write_bytes(len(encoded).to_bytes(8, "little") + encoded + body)
        try:
            tensors, _ = read_safetensors_header(file)
        except UserError as exc:
            assert "\n" not in str(exc) and str(file) in str(exc)
            hostile.record("safetensors headers", hostile.REFUSED)
            return
        except BaseException:
            hostile.record("safetensors headers", hostile.VIOLATION)
            raise
        # Accepted: the safetensors library itself (an independent reader) opens it and agrees on every tensor.
        from safetensors import safe_open

        with safe_open(str(file), "pt") as reference:
            assert sorted(reference.keys()) == sorted(tensors)
            for name, info in tensors.items():
                assert tuple(reference.get_tensor(name).shape) == info.shape
        hostile.record("safetensors headers", hostile.ACCEPTED)

    parse_one()
    check_saw_both("safetensors headers", before)
