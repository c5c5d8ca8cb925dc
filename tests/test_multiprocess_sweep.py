"""The sweep under two processes: the adapter route gives the one-process results; work the main process does
alone (fits, checks, writes) reaches every process, its failures included; soup adapters have one owner."""
from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest
import yaml

import sweep_fixtures as sf
from launch_helpers import REPO, run, two_cpu_processes
from lines.atomic import publish_directory
from test_lora import make_adapter


def test_publishing_a_directory_keeps_the_first_finished_copy(tmp_path):
    first, second, target = tmp_path / "a", tmp_path / "b", tmp_path / "target"
    for directory, text in ((first, "first"), (second, "second")):
        directory.mkdir()
        (directory / "weights").write_text(text)
    assert publish_directory(first, target) is True
    assert publish_directory(second, target) is False  # another process was first: its copy stays, whole
    assert (target / "weights").read_text() == "first"
    assert not first.exists() and not second.exists()


def test_normalisers_are_fitted_by_the_main_process_and_taken_by_every_process(tmp_path):
    """Every process scores with the statistics the main process fitted, not with its own fit."""
    from pipelines.sweep.evaluate import PointEvaluator

    class Objective:
        def __init__(self, name):
            from reward_models.normalize import Normalizer

            self.reward = type("R", (), {"name": name, "normalizer": Normalizer("zscore")})()
            self.identity = {"name": name}

    objectives = [Objective("positive"), Objective("long")]
    evaluator = PointEvaluator.__new__(PointEvaluator)
    evaluator.objectives = objectives
    evaluator.resolved = lambda point: (point, None)
    evaluator.gen_key = lambda point, prompts: "g" * 24
    evaluator.router = type("Router", (), {"route": staticmethod(lambda spec: "dense")})()
    base_point = type("P", (), {"merge_spec": lambda self: None})()
    from_main = {"positive": {"method": "zscore", "mean": 0.25, "std": 2.0, "n_reference": 12},
                 "long": {"method": "zscore", "mean": 40.0, "std": 9.0, "n_reference": 12}}
    calls = []
    # As on a process other than the main one: the fit is never run here, the main process's statistics arrive.
    evaluator.fit_normalizers(base_point, [], on_main=lambda fn, what: calls.append(what) or from_main)
    assert len(calls) == 1
    for objective in objectives:
        assert objective.reward.normalizer.record() == from_main[objective.reward.name]
        assert objective.identity["zscore_fitted_on"] == "g" * 24


ON_MAIN_SCRIPT = textwrap.dedent('''
    import sys
    from pipelines.distributed import on_main, process_state
    from pipelines.errors import PipelineError
    from lines.errors import UserError, report_user_error

    state = process_state()
    value = on_main(lambda: {"rank": state.process_index, "stats": [1.5, 2.5]}, "sharing")
    print(f"rank {state.process_index} got {value}", flush=True)

    def check():
        raise PipelineError("reference policy 'morl' does not exist; fix policies.morl")

    try:
        on_main(check, "checking the references")
    except UserError as exc:
        print(f"rank {state.process_index} stopped: {type(exc).__name__}", flush=True)
        sys.exit(report_user_error(exc))
''')


@pytest.mark.slow
def test_an_error_of_the_main_process_alone_stops_every_process(tmp_path):
    script = tmp_path / "on_main.py"
    script.write_text(ON_MAIN_SCRIPT)
    result = run(two_cpu_processes([str(script)]), timeout=120)
    assert result.returncode != 0
    # The main process's result reached both, and its one-line error stopped both (none waits for ever).
    for rank in (0, 1):
        assert f"rank {rank} got {{'rank': 0, 'stats': [1.5, 2.5]}}" in result.stdout
    assert "rank 0 stopped: PipelineError" in result.stdout and "rank 1 stopped: UserError" in result.stdout
    assert result.stderr.count("error: reference policy 'morl' does not exist; fix policies.morl") == 2


@pytest.mark.slow
def test_two_processes_on_the_adapter_route_give_the_one_process_results(tmp_path):
    paths = sf.build_sweep_inputs(tmp_path / "inputs")
    settings = [dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
                dict(r=8, lora_alpha=8, target_modules=["q_proj", "up_proj"])]
    paths["policies"] = [make_adapter(paths["base"], tmp_path / f"lora_{i}", seed=i + 3, **s)
                         for i, s in enumerate(settings)]

    def config(root):
        path = sf.sweep_config(root, paths)
        data = yaml.safe_load(path.read_text())
        # z-scores fitted on θ0's samples (no reference file): the statistics every process must share.
        data["rewards"] = [{"name": "positive", "type": "vader", "normalize": "zscore"},
                           {"name": "long", "type": "length", "normalize": "zscore"}]
        data["metrics"] = [{"name": "kl", "type": "kl"}]
        data["sweep"] = {"points": 3, "lora_route": "adapter", "points_per_batch": 2, "variants": [
            {"name": "soup", "method": "linear"},
            {"name": "lines", "method": "linear", "lines": {"alpha": 0.5, "beta": 0.5}}]}
        data["forgetting"] = {"gamma_grid": [0.5]}
        path.write_text(yaml.safe_dump(data))
        return str(path)

    script = str(REPO / "pipelines" / "merge_policies.py")
    one = run([sys.executable, script, "--config", config(tmp_path / "one"), "--quiet"])
    assert one.returncode == 0, one.stderr[-3000:]
    two = run(two_cpu_processes([script, "--config", config(tmp_path / "two"), "--quiet"]))
    assert two.returncode == 0, two.stderr[-3000:]
    for rank in (0, 1):
        assert re.search(rf"evaluation sweep: rank {rank} evaluates [1-9]\d* of \d+ points", two.stderr)
    sweep = lambda root: root / "runs" / "tiny" / "sweep"
    rows = lambda root: [json.loads(line) for line in (sweep(root) / "points.jsonl").open()]
    one_rows, two_rows = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert [(r["front"], r["weights"]) for r in two_rows] == [(r["front"], r["weights"]) for r in one_rows]
    for a, b in zip(one_rows, two_rows):
        for name in ("positive", "long"):
            assert b["objectives"][name] == a["objectives"][name], (a["front"], name)
            assert b["objectives"][name]["normalization"]["method"] == "zscore"
        assert b["objectives"]["kl"]["mean"] == pytest.approx(a["objectives"]["kl"]["mean"], rel=1e-5, abs=1e-6)
    adapters = lambda root: sorted(p.name for p in (sweep(root) / "adapters").iterdir())
    assert adapters(tmp_path / "two") == adapters(tmp_path / "one")
    assert not [p for p in (sweep(tmp_path / "two") / "adapters").iterdir() if p.name.startswith(".")]
