"""Where a merge computes (`lines merge --device`, `TensorMerger(device=...)`): a device that is not there is one line
before anything is read or written; on a GPU the merge equals the CPU's (run where CUDA is, e.g. by
benchmarks/gpu_check.py --no-vllm, which also times it)."""
from __future__ import annotations

import pytest
import torch

from lines.cli import main as lines_main
from lines.engine import compute_device
from lines.errors import LinesError
from lines.merge import merge
from tiny import ties_recipe_on_two_policies
from train_helpers import state_dict_of as merged


def test_cpu_is_the_default_and_an_explicit_cpu_is_the_same_merge(tmp_path):
    recipe = ties_recipe_on_two_policies(tmp_path / "models", "10MB")
    default, explicit = merge(recipe, tmp_path / "a", progress=False), merge(recipe, tmp_path / "b", progress=False,
                                                                               device="cpu")
    a, b = merged(default), merged(explicit)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("device, message", [
    ("mps", "merges compute on cpu or cuda"),
    ("tpu", "is not a device name"),
] + ([] if torch.cuda.is_available() else [("cuda", "no CUDA GPU is visible"), ("cuda:3", "no CUDA GPU is visible")]))
def test_a_device_that_is_not_there_is_one_line(device, message):
    with pytest.raises(LinesError, match=message):
        compute_device(device)


def test_the_command_line_refuses_an_absent_device_and_writes_nothing(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal needs one without")
    recipe = ties_recipe_on_two_policies(tmp_path / "models", "10MB")
    assert lines_main(["merge", str(recipe), str(tmp_path / "out"), "--device", "cuda", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: device 'cuda'")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["models"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.py --no-vllm)")
@pytest.mark.parametrize("method, parameters", [("linear", {}), ("ties", {"density": 0.5}),
                                                ("dare_ties", {"density": 0.5})])
def test_a_gpu_merge_equals_the_cpu_merge(tmp_path, method, parameters):
    import yaml

    recipe = ties_recipe_on_two_policies(tmp_path / "models", "10MB")
    data = yaml.safe_load(recipe.read_text())
    data.update(method=method, parameters=parameters)
    recipe.write_text(yaml.safe_dump(data))
    cpu, gpu = merged(merge(recipe, tmp_path / "cpu", progress=False)), \
        merged(merge(recipe, tmp_path / "gpu", progress=False, device="cuda"))
    for name, tensor in cpu.items():
        spacing = (torch.nextafter(tensor, torch.full_like(tensor, float("inf"))) - tensor).abs()
        assert ((gpu[name] - tensor).abs() <= spacing).all(), name
