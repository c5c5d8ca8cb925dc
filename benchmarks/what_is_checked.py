"""The numbers of the README's "What is checked" section, measured by the test suite, never typed by hand.

    python benchmarks/what_is_checked.py                 # runs the hostile-input tests, prints the Markdown rows
    python benchmarks/what_is_checked.py --counts FILE   # rows from counts a suite run already wrote

The hostile-input tests (tests/test_hostile_*.py) count every bad input they try and its outcome; with the
environment variable LINES_CHECKED_JSON naming a file, the pytest run writes those counts there as JSON
({"hostile_inputs": {category: {"refused": n, "accepted": n, "violation": n}}}). `hostile_input_rows` turns them into
the section's table rows.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNTS_ENV = "LINES_CHECKED_JSON"
HOSTILE_TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_hostile_*.py"))

# What each category's inputs are, as the README's reader needs it.
CATEGORIES = {
    "recipes": "merge recipes (`lines merge`): valid recipes mutated by hypothesis — wrong types, missing and "
               "unknown keys, out-of-range and huge numbers, NaN/inf, unicode, damaged bytes",
    "run configs": "run configs (`merge_policies.py --check`): the same mutations of a valid config",
    "prompt files": "prompt files (JSONL, CSV, TXT): mutated rows, empty and non-text prompts, invalid UTF-8 "
                    "(hypothesis and hand-made cases)",
    "safetensors headers": "safetensors headers mutated by hypothesis, read by the one header parser",
    "safetensors files": "safetensors files: header length beyond the file, overlapping, out-of-range and gapped "
                         "offsets, unknown dtypes, shapes that disagree with their bytes, duplicate names, "
                         "non-JSON headers",
    "model configs": "checkpoint config.json files that are not objects or not JSON, with bad layer counts or no "
                     "model_type",
    "non-finite weights": "NaN and ±inf weights in an input checkpoint (float32, bfloat16)",
    "adapter configs": "LoRA adapters: ranks 0, negative, non-integer, larger than the layer or disagreeing with "
                       "the factors; bad alphas; target modules absent from the model; NaN factors",
    "output paths": "`lines merge` output directories that cannot be created (under a file, no permission)",
    "pickles": "a pickle checkpoint whose unpickling would run a command",
    "remote code": "checkpoints whose config.json maps to their own code (auto_map) without trust_remote_code",
    "paths": "run, reward and variant names with `..`, `/` or absolute paths; symlinks out of the run directory",
}


def hostile_input_rows(counts: dict[str, dict[str, int]]) -> list[str]:
    """Markdown table rows (header first) for the hostile-input counts, one row per category and a total."""
    rows = ["| bad inputs | tried | refused with one `error:` line | accepted as valid | tracebacks |",
            "|---|---:|---:|---:|---:|"]
    totals = {"tried": 0, "refused": 0, "accepted": 0, "violation": 0}
    order = [c for c in CATEGORIES if c in counts] + sorted(c for c in counts if c not in CATEGORIES)
    for category in order:
        c = counts[category]
        tried = c.get("refused", 0) + c.get("accepted", 0) + c.get("violation", 0)
        for key, value in (("tried", tried), ("refused", c.get("refused", 0)), ("accepted", c.get("accepted", 0)),
                           ("violation", c.get("violation", 0))):
            totals[key] += value
        rows.append(f"| {CATEGORIES.get(category, category)} | {tried} | {c.get('refused', 0)} | "
                    f"{c.get('accepted', 0)} | {c.get('violation', 0)} |")
    rows.append(f"| **all** | **{totals['tried']}** | **{totals['refused']}** | **{totals['accepted']}** | "
                f"**{totals['violation']}** |")
    return rows


def measure_hostile_counts() -> dict[str, dict[str, int]]:
    """Run the hostile-input tests and return the counts they wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        counts_file = Path(tmp) / "checked.json"
        env = {**os.environ, COUNTS_ENV: str(counts_file), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *HOSTILE_TESTS],
                                cwd=ROOT, env=env)
        if result.returncode != 0:
            sys.exit(f"the hostile-input tests failed (exit {result.returncode}); no numbers to report")
        return json.loads(counts_file.read_text())["hostile_inputs"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", help="a JSON file written by a suite run with LINES_CHECKED_JSON set")
    args = parser.parse_args(argv)
    counts = json.loads(Path(args.counts).read_text())["hostile_inputs"] if args.counts else measure_hostile_counts()
    print("\n".join(hostile_input_rows(counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
