"""Stage timings: each stage counts its own time only; a stage inside another is taken out of the outer one."""
import time

from pipelines import stage_times


def test_nested_stages_are_exclusive():
    stage_times.reset()
    with stage_times.timed("outer"):
        time.sleep(0.05)
        with stage_times.timed("inner"):
            time.sleep(0.1)
        with stage_times.timed("inner"):
            time.sleep(0.1)
    times = stage_times.snapshot()
    assert times["inner"]["calls"] == 2 and 0.19 <= times["inner"]["seconds"] < 0.35
    assert 0.04 <= times["outer"]["seconds"] < 0.15  # the 0.2 s inside is not counted twice
    stage_times.reset()
    assert stage_times.snapshot() == {}
