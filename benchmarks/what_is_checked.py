"""The numbers of what is checked (docs/checks.md), measured by the test suite and the mutation run, never typed
by hand: the tables in docs/results.md are this script's output.

    python benchmarks/what_is_checked.py                 # runs the hostile-input and kill tests, prints the tables
    python benchmarks/what_is_checked.py --counts FILE   # tables from counts a suite run already wrote
    python benchmarks/what_is_checked.py --counts FILE --write docs/results.md   # rewrites the page's regions

With --write, the page's regions `hostile-inputs`, `faults-injected` and `mutation-score` (between
`<!-- begin: NAME -->` and `<!-- end: NAME -->`) are replaced and the rest of the page is left as it is.

The hostile-input tests (tests/test_hostile_*.py) count every bad input they try and its outcome, and the kill tests
(tests/test_resume_after_kill.py) every SIGKILL they inject; with the environment variable LINES_CHECKED_JSON naming
a file, the pytest run writes those counts there as JSON ({"hostile_inputs": {category: {"refused": n, "accepted": n,
"violation": n}}, "faults_injected": {stage: {"cut": n, "finished first": n}}}). The mutation scores are read from
benchmarks/mutation_results.json (written by benchmarks/mutation_score.py, run by hand: it takes minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from marked_regions import write_regions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COUNTS_ENV = "LINES_CHECKED_JSON"
CHECKING_TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_hostile_*.py")) + [
    "tests/test_resume_after_kill.py", "tests/test_machine_faults.py", "tests/test_damaged_cache.py",
    "tests/test_run_lock.py", "tests/test_signals.py"]
MUTATION_RESULTS = ROOT / "benchmarks" / "mutation_results.json"

# What each category's inputs are, as the docs' reader needs it.
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
    order = [c for c in CATEGORIES if c in counts] + sorted(c for c in counts if c not in CATEGORIES)
    items = []
    for category in order:
        outcomes = [counts[category].get(key, 0) for key in ("refused", "accepted", "violation")]
        items.append((CATEGORIES.get(category, category), [sum(outcomes), *outcomes]))
    return _count_table(["bad inputs", "tried", "refused with one `error:` line", "accepted as valid", "tracebacks"],
                        items)


def fault_rows(faults: dict[str, dict[str, int]]) -> list[str]:
    """Markdown table rows (header first) for the faults injected: kills per stage and their outcome."""
    items = []
    for stage, c in faults.items():
        cut, first = c.get("cut", 0), c.get("finished first", 0)
        items.append((stage, [cut + first, cut, first]))
    return _count_table(["stage killed with SIGKILL at seeded moments", "kills",
                         "cut short, then resumed to the uninterrupted results", "finished before the kill"], items)


def machine_fault_rows(faults: dict[str, dict[str, int]]) -> list[str]:
    """Markdown table rows (header first) for the machine's faults: a full disk, damaged cache entries, a second
    job, signals — per kind and stage, and their outcome."""
    items = []
    for name, c in faults.items():
        cut, first = c.get("cut", 0), c.get("finished first", 0)
        items.append((name, [cut + first, cut, first]))
    return _count_table(["fault of the machine: stage", "injected", "ended in one line, then the re-run reached the "
                         "uninterrupted results", "finished before the fault"], items)


def mutation_rows(results: dict) -> list[str]:
    """Markdown table rows (header first) for the mutation score per module and in total. A mutant counts as
    killed when the tests failed or timed out with it; one no test reaches counts as surviving."""
    items = [(f"`{m['file']}`", [m["mutants"], m["killed"], m.get("timeout", 0), m["survived"] + m.get("no_tests", 0)])
             for m in results["modules"].values()]
    return _count_table(["module", "mutants", "killed", "timed out", "survived", "score"], items,
                        derived=lambda v: _score(v[1] + v[2], v[3]))


def _count_table(header: list[str], items: list[tuple[str, list[int]]], derived=None) -> list[str]:
    """A Markdown table of counts: a row per (label, counts), then their column sums in bold; `derived` adds a last
    cell computed from a row's counts (and from the sums)."""
    width = len(header) - 1 - (derived is not None)
    totals = [sum(values[i] for _, values in items) for i in range(width)]

    def cells(values: list[int]) -> list[str]:
        return [str(v) for v in values] + ([derived(values)] if derived else [])

    rows = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    rows += [f"| {label} | " + " | ".join(cells(values)) + " |" for label, values in items]
    rows.append("| **all** | " + " | ".join(f"**{c}**" for c in cells(totals)) + " |")
    return rows


def _score(killed: int, survived: int) -> str:
    return f"{100 * killed / (killed + survived):.1f}%" if killed + survived else "–"


def measure_counts() -> dict[str, dict]:
    """Run the hostile-input and kill tests and return the counts they wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        counts_file = Path(tmp) / "checked.json"
        env = {**os.environ, COUNTS_ENV: str(counts_file), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CHECKING_TESTS],
                                cwd=ROOT, env=env)
        if result.returncode != 0:
            sys.exit(f"the hostile-input or kill tests failed (exit {result.returncode}); no numbers to report")
        return json.loads(counts_file.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", help="a JSON file written by a suite run with LINES_CHECKED_JSON set")
    parser.add_argument("--write", metavar="PAGE",
                        help="replace the tables' regions of this Markdown page (e.g. docs/results.md)")
    args = parser.parse_args(argv)
    counts = json.loads(Path(args.counts).read_text()) if args.counts else measure_counts()
    tables = {"hostile-inputs": hostile_input_rows(counts["hostile_inputs"]),
              "faults-injected": fault_rows(counts.get("faults_injected", {})),
              "machine-faults": machine_fault_rows(counts.get("machine_faults", {})),
              "mutation-score": mutation_rows(json.loads(MUTATION_RESULTS.read_text()))}
    if args.write:
        try:
            write_regions(args.write, {name: "\n".join(rows) for name, rows in tables.items()})
        except ValueError as error:
            sys.exit(f"error: {args.write}: {error}")
        print(f"wrote {', '.join(tables)} in {args.write}")
    else:
        print("\n\n".join("\n".join(rows) for rows in tables.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
