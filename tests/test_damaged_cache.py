"""A damaged cache entry (truncated, not JSON, wrong fields, a samples file shorter than its record says, a record
whose own key is not its name) is read as missing: the main job recomputes it and says so in one warning line with
the count, reaching the results of a run that was never damaged; `lines report` names the damaged file and the
command that recomputes it."""
from __future__ import annotations

import json
import shutil

import pytest

import sweep_fixtures as sf
from faults import record_faults
from lines.cli import main as lines_main
from pipelines.merge_policies import main as sweep_main
from pipelines.sweep.cache import SweepCache
from test_machine_faults import SMALL, one_error_line
from test_resume_after_kill import unreadable_records

ROWS = [{"prompt_id": f"p{i}", "prompt": "the soup", "response": " was hot", "response_tokens": 3} for i in range(4)]
SCORES = {"values": [0.1, 0.2], "raw": [1.0, 2.0], "normalization": None}
POINT = {"gen_key": "g", "variant": "soup", "weights": [0.5, 0.5], "merge": {}, "prompt_ids": ["p0"],
         "objectives": {}}


def truncate(path):
    """Cut to 100 bytes (as a full disk or a killed copy leaves it), or to half of a smaller file."""
    data = path.read_bytes()
    path.write_bytes(data[:min(100, len(data) // 2)])


def not_json(path):
    path.write_text("this is not JSON\n")


def drop_field(field):
    def damage(path):
        record = json.loads(path.read_text())
        del record[field]
        path.write_text(json.dumps(record))
    return damage


def drop_a_row(path):
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[1:]))


def swap_with(other):
    return lambda path: shutil.copyfile(other, path)


# -- each kind of damage, on each kind of entry ----------------------------------------------------------------------

def saved(tmp_path):
    cache = SweepCache(tmp_path)
    cache.save_samples("g", ROWS)
    cache.save_samples("h", ROWS[:2])
    cache.save_scores("s", SCORES)
    cache.save_scores("t", SCORES)
    cache.save_point("k", {"key": "k", **POINT})
    cache.save_point("m", {"key": "m", **POINT})
    return cache


def test_sound_entries_read_back_as_written(tmp_path):
    cache = saved(tmp_path)
    assert cache.load_samples("g") == ROWS and cache.load_scores("s") == {"key": "s", **SCORES}
    assert cache.load_point("k") == {"key": "k", **POINT} and cache.load_point("absent") is None
    assert cache.damaged == {} and cache.damage_warning() is None


DAMAGES = [
    ("samples", "g", ".jsonl", truncate, "truncated"), ("samples", "g", ".jsonl", not_json, "not JSON"),
    ("samples", "g", ".jsonl", drop_a_row, "3 rows where its record says 4"),
    ("samples", "g", ".jsonl", lambda p: p.write_text(p.read_text().replace('"response_tokens": 3', '"x": 3', 1)),
     "a row without its fields"),
    ("samples", "g", ".jsonl", lambda p: shutil.copyfile(p.parent / "h.jsonl", p), "key does not match"),
    ("scores", "s", ".json", truncate, "not JSON"), ("scores", "s", ".json", not_json, "not JSON"),
    ("scores", "s", ".json", drop_field("raw"), "missing field 'raw'"),
    ("scores", "s", ".json", lambda p: p.write_text(json.dumps({"key": "s", **SCORES, "raw": [1.0]})),
     "different lengths"),
    ("scores", "s", ".json", lambda p: shutil.copyfile(p.parent / "t.json", p), "key does not match"),
    ("scores", "s", ".json", lambda p: p.write_text(json.dumps(SCORES)), "missing field 'key'"),  # an older format
    ("points", "k", ".json", truncate, "not JSON"), ("points", "k", ".json", not_json, "not JSON"),
    ("points", "k", ".json", drop_field("objectives"), "missing field 'objectives'"),
    ("points", "k", ".json", lambda p: p.write_text("[1, 2]"), "not a JSON object"),
    ("points", "k", ".json", lambda p: shutil.copyfile(p.parent / "m.json", p), "key does not match"),
    ("points", "k", ".json", lambda p: p.write_bytes(b"\xff\xfe\x00"), "unreadable"),
]


@pytest.mark.parametrize("kind, key, suffix, damage, why", DAMAGES)
def test_a_damaged_entry_reads_as_missing_and_is_counted(tmp_path, kind, key, suffix, damage, why):
    cache = saved(tmp_path)
    path = tmp_path / kind / f"{key}{suffix}"
    damage(path)
    load = {"samples": cache.load_samples, "scores": cache.load_scores, "points": cache.load_point}[kind]
    assert load(key) is None and load(key) is None  # read twice, counted once
    assert list(cache.damaged) == [path] and why in cache.damaged[path]
    warning = cache.damage_warning()
    assert warning.startswith("warning: 1 damaged cache entry") and f"{kind}/{key}{suffix}" in warning


# -- the main job and the report -----------------------------------------------------------------------------------

@pytest.mark.slow  # three tiny sweeps and reports, about half a minute on two cores
def test_damaged_entries_are_recomputed_by_the_main_job_and_named_by_the_report(tmp_path, capsys):
    inputs = sf.build_sweep_inputs(tmp_path / "inputs")
    config = sf.sweep_config(tmp_path, inputs, **SMALL)
    job = lambda: sweep_main(["--config", str(config), "--quiet"])
    assert job() == 0
    run = tmp_path / "runs" / "tiny"
    outputs = ("sweep/points.jsonl", "sweep/plan.json", "report/points.csv")
    uninterrupted = {name: (run / name).read_text() for name in outputs}

    points = [json.loads((run / "sweep" / "points" / f"{k}.json").read_text())
              for k in json.loads((run / "sweep" / "plan.json").read_text())["evaluation_keys"]]
    by_gen: dict[str, list] = {}
    for p in points:
        by_gen.setdefault(p["gen_key"], []).append(p)
    alone = [p for p in points if len(by_gen[p["gen_key"]]) == 1]  # points whose samples are theirs alone
    shown = [p for p in points if p["variant"] == "policy"]  # the report shows the single policies' samples
    alone = [p for p in alone if p["gen_key"] not in {s["gen_key"] for s in shown}]
    point_file = lambda p: run / "sweep" / "points" / f"{p['key']}.json"
    samples_file = lambda p: run / "sweep" / "samples" / f"{p['gen_key']}.jsonl"
    damages = [(point_file(alone[0]), truncate), (point_file(alone[1]), not_json),
               (point_file(alone[2]), drop_field("objectives")), (point_file(alone[3]), swap_with(point_file(alone[4]))),
               (samples_file(shown[0]), drop_a_row), (samples_file(shown[1]), truncate)]
    plan, diagnostics = run / "sweep" / "plan.json", run / "sweep" / "diagnostics.json"
    pristine = {path: path.read_bytes() for path, _ in damages + [(plan, None), (diagnostics, None)]}
    capsys.readouterr()

    # The report names the damaged file and the command that recomputes it: every kind it reads, each alone.
    for path, damage in damages[:4] + damages[-2:] + [(plan, truncate), (diagnostics, not_json)]:
        damage(path)
        assert lines_main(["report", str(run)]) == 2
        one_error_line(capsys.readouterr().err, str(path), "damaged", "pipelines/merge_policies.py --config")
        path.write_bytes(pristine[path])
    # All at once: the report names one of them.
    for path, damage in damages:
        damage(path)
    assert lines_main(["report", str(run)]) == 2
    line = one_error_line(capsys.readouterr().err, "damaged", "pipelines/merge_policies.py --config")
    assert any(str(path) in line for path, _ in damages), line
    # The main job recomputes them, says so once, and reaches the undamaged results.
    assert job() == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"{len(damages)} damaged cache entries" in warnings[0], err
    assert {name: (run / name).read_text() for name in outputs} == uninterrupted
    assert unreadable_records(run) == []
    assert lines_main(["report", str(run)]) == 0
    record_faults("sweep", "damaged cache entries", [True] * len(damages))
