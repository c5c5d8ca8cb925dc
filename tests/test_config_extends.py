"""`extends:` in a config file: a variant states only what differs from the config it starts from."""
from __future__ import annotations

import pytest
import yaml

from pipelines.errors import PipelineError
from pipelines.merge_policies import main
from pipelines.config.overrides import read_config


def write(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_file_is_laid_over_the_one_it_extends(tmp_path):
    write(tmp_path / "base.yaml", {"run_name": "base", "sweep": {"points": 9, "variants": [{"name": "soup"}]},
                                   "training": {"training": {"algorithm": "dpo", "max_steps": 50, "dpo": {"rounds": 1}}}})
    (tmp_path / "sub").mkdir()
    child = write(tmp_path / "sub" / "child.yaml", {
        "extends": "../base.yaml", "run_name": "child", "sweep": {"variants": [{"name": "lines"}]},
        "training": {"training": {"algorithm": "ppo", "ppo": {"num_ppo_epochs": 2}}}})
    grandchild = write(tmp_path / "sub" / "grandchild.yaml", {"extends": "child.yaml", "sweep": {"points": 3}})
    assert read_config(child) == {
        "run_name": "child", "sweep": {"points": 9, "variants": [{"name": "lines"}]},  # lists are replaced
        "training": {"training": {"algorithm": "ppo", "max_steps": 50, "dpo": {"rounds": 1},
                                  "ppo": {"num_ppo_epochs": 2}}}}
    assert read_config(grandchild)["sweep"] == {"points": 3, "variants": [{"name": "lines"}]}
    assert read_config(grandchild)["training"]["training"]["algorithm"] == "ppo"


@pytest.mark.parametrize("extends, message", [
    ("nope.yaml", r"extends: 'nope.yaml' does not exist next to this file .*; fix the path"),
    (3, r"extends must be the path of another config file \(relative to this one\), got 3"),
    ("loop.yaml", r"extends: 'loop.yaml' leads back to .* \(a cycle\)"),
])
def test_a_bad_extends_is_one_line(tmp_path, extends, message):
    path = write(tmp_path / "loop.yaml", {"extends": extends, "run_name": "x"})
    with pytest.raises(PipelineError, match=message):
        read_config(path)


def test_the_main_job_reads_extends_and_reports_its_errors_in_one_line(tmp_path, capsys):
    path = write(tmp_path / "bad.yaml", {"extends": "missing.yaml"})
    assert main(["--config", str(path), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"error: {path}: extends: 'missing.yaml' does not exist")
