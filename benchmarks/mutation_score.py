"""Mutation score of the core maths: mutmut over one module at a time, with only the tests that exercise it.

For each module below, the repository is copied into a scratch directory with a `[tool.mutmut]` section naming
that module and its tests, `mutmut run` mutates it (one mutant at a time, each checked by the tests that call the
mutated function), and the outcome is read back with `mutmut results` and `mutmut show`. Writes
benchmarks/mutation_results.json (per module: mutants, killed, survived, timeout, no_tests, score, and each survivor's
line and diff) and renders benchmarks/MUTATION.md from it, with the reason each survivor is equivalent taken from
benchmarks/mutation_equivalents.py (a survivor without one is marked UNEXPLAINED).

Run by hand (tens of seconds to minutes per module; too slow for CI):
    python benchmarks/mutation_score.py                   # every module
    python benchmarks/mutation_score.py schedule pareto   # some of them (the others' results are kept)
    python benchmarks/mutation_score.py --render          # MUTATION.md again from the JSON, nothing run
The score is (killed + timeout) / (killed + timeout + survived + no tests): a mutant that no test reaches counts
against it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "mutation_results.json"
REPORT = REPO / "benchmarks" / "MUTATION.md"

# module key -> (file to mutate, the fast test files that exercise it, the functions mutated: None for all). Only
# unit tests on tiny arrays/tensors: mutmut runs, for each mutant, the tests that called the mutated function, so
# these take seconds. The study's inference over seeds (t-interval, sign-flip p-value, Holm, TOST, verdicts) is
# pipelines/seed_inference.py; the study report's assembly is covered end to end by tests/test_study*.py.
MODULES: dict[str, tuple[str, list[str], list[str] | None]] = {
    "merge_methods": ("lines/merge_methods.py", ["tests/test_merge_methods.py"], None),
    "schedule": ("lines/schedule.py", ["tests/test_schedule.py"], None),
    "update_norms": ("lines/update_norms.py", ["tests/test_schedule.py", "tests/test_lines_alpha.py"], None),
    "pareto": ("pipelines/pareto.py", ["tests/test_pareto.py", "tests/test_bootstrap.py"], None),
    "summary": ("pipelines/summary.py", ["tests/test_bootstrap.py"], None),
    "seed_inference": ("pipelines/seed_inference.py", ["tests/test_seed_inference.py"], None),
    "selection": ("pipelines/sweep/selection.py", ["tests/test_selection.py"], None),
    "weights": ("pipelines/sweep/weights.py", ["tests/test_selection.py"], None),
}
COPIED = ["lines", "pipelines", "reward_models", "tests", "pyproject.toml", "configs"]
STATUSES = ("killed", "survived", "timeout", "no tests", "suspicious", "skipped", "segfault", "not checked",
            "check was interrupted by user", "caught by type check")


def scratch_copy(module: str, tests: list[str]) -> Path:
    """The repository's code and tests in a scratch directory, configured to mutate `module` only."""
    root = Path(tempfile.mkdtemp(prefix="mutation-"))
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, root / name)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n[tool.mutmut]\n"
                         + f"source_paths = {json.dumps(['lines', 'pipelines', 'reward_models'])}\n"
                         + f"only_mutate = {json.dumps([module])}\n"
                         + f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
                         + 'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x", "-m", "not slow"]\n'
                         + "use_git_change_detection = false\n")
    return root


def mutmut(root: Path, *args: str) -> subprocess.CompletedProcess:
    # The scratch copy, not the installed package, must be imported: mutmut puts mutants/ first on sys.path and
    # the editable install's finder comes after it; PYTHONPATH pointing at the repository would win, so it is unset.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=root, env=env, capture_output=True,
                          text=True)


def mutant_prefix(module: str, function: str) -> str:
    """mutmut's name of a function's mutants: the dotted module, then x_<function> (xǁClassǁmethod for methods)."""
    return module.removesuffix(".py").replace("/", ".") + "." + function + "__mutmut_"


def run_module(key: str, max_children: int) -> tuple[dict, list[dict]]:
    module, tests, functions = MODULES[key]
    root = scratch_copy(module, tests)
    started = time.monotonic()
    selected = [mutant_prefix(module, f) + "*" for f in functions] if functions else []
    try:
        run = mutmut(root, "run", "--max-children", str(max_children), *selected)
        if run.returncode != 0:
            raise SystemExit(f"mutmut run failed for {module} (scratch copy kept at {root}):\n{run.stdout[-3000:]}"
                             f"\n{run.stderr[-3000:]}")
        listing = mutmut(root, "results", "--all", "true").stdout
        outcome: dict[str, str] = {}
        for line in listing.splitlines():
            match = re.match(r"\s*(\S+): (.+)$", line)
            if match and match.group(2).strip() in STATUSES:
                outcome[match.group(1)] = match.group(2).strip()
        if functions:  # the functions chosen above; the others' mutants were never run
            outcome = {name: status for name, status in outcome.items()
                       if any(name.startswith(mutant_prefix(module, f)) for f in functions)}
        survivors = []
        for name, status in sorted(outcome.items(), key=lambda kv: mutant_order(kv[0])):
            if status in ("survived", "no tests"):
                diff = mutmut(root, "show", name).stdout.strip()
                survivors.append({"mutant": name, "status": status, "line": changed_line(REPO / module, name, diff),
                                  "diff": "\n".join(diff.splitlines()[1:])})  # line 0 repeats name and status
    finally:
        shutil.rmtree(root, ignore_errors=True)
    counts = {status: sum(1 for s in outcome.values() if s == status) for status in ("killed", "survived", "timeout")}
    no_tests = sum(1 for s in outcome.values() if s == "no tests")
    # A mutant no test reaches is a survivor in all but name: it counts against the score.
    tested = counts["killed"] + counts["survived"] + counts["timeout"] + no_tests
    return {"file": module, "functions": functions or "all", "tests": tests, "mutants": len(outcome), **counts,
            "no_tests": no_tests,
            "score": round((counts["killed"] + counts["timeout"]) / tested, 4) if tested else None,
            "seconds": round(time.monotonic() - started, 1), "survivors": survivors}


def mutant_order(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number)


def changed_line(path: Path, mutant: str, diff: str) -> int | None:
    """The line of `path` that the mutant changes: the first removed line of the diff, searched from the mutated
    function's `def` on (mutmut's diff is numbered from the function, not the file)."""
    function = mutant.rpartition("__mutmut_")[0].rpartition(".")[2].removeprefix("x_").split("\u01c1")[-1]
    removed = next((line[1:].strip() for line in diff.splitlines()
                    if line.startswith("-") and not line.startswith("---")), None)
    source = path.read_text().splitlines()
    start = next((i for i, line in enumerate(source) if re.match(rf"\s*def {re.escape(function)}\(", line)), 0)
    for i in range(start, len(source)):
        if removed is not None and source[i].strip() == removed:
            return i + 1
    return start + 1 if removed is None else None


def render(results: dict) -> str:
    """MUTATION.md: the scores and every survivor with the reason it is equivalent (or UNEXPLAINED)."""
    from mutation_equivalents import EQUIVALENT

    modules = results["modules"]
    total = {k: sum(m[k] for m in modules.values()) for k in ("mutants", "killed", "survived", "timeout", "no_tests")}
    tested = total["killed"] + total["timeout"] + total["survived"] + total["no_tests"]
    out = ["# Mutation score of the core maths", "",
           f"Measured with {results['tool']} by `benchmarks/mutation_score.py` (this file is written by it; the "
           "numbers are in `mutation_results.json`). Each mutant is checked by the tests that call the mutated "
           "function, among the test files named per module. Score: (killed + timeout) / (killed + timeout + "
           "survived + no tests).", "",
           "| module | file | mutants | killed | survived | timeout | no tests | score |",
           "|---|---|---|---|---|---|---|---|"]
    for key, m in modules.items():
        scope = "" if m["functions"] == "all" else " (" + ", ".join(f.removeprefix("x_") for f in m["functions"]) + ")"
        out.append(f"| {key} | `{m['file']}`{scope} | {m['mutants']} | {m['killed']} | {m['survived']} | "
                   f"{m['timeout']} | {m['no_tests']} | {m['score']:.1%} |")
    out.append(f"| all | | {total['mutants']} | {total['killed']} | {total['survived']} | {total['timeout']} | "
               f"{total['no_tests']} | {(total['killed'] + total['timeout']) / tested:.1%} |")
    out += ["", "Tests per module: " + "; ".join(f"{k}: " + ", ".join(f"`{t}`" for t in m["tests"])
                                                  for k, m in modules.items()) + ".", "",
            "## Surviving mutants", "",
            "Each survivor below changes no value and no error any caller receives (an equivalent mutant), for the "
            "reason given; the progress-bar ones change only what is drawn on stderr.",
            ""]
    for key, m in modules.items():
        for survivor in m["survivors"]:
            reason = EQUIVALENT.get(survivor["mutant"], "UNEXPLAINED")
            out += [f"### `{m['file']}:{survivor['line']}` — {survivor['mutant'].rpartition('.')[2]} "
                    f"({survivor['status']})", "", "```diff", survivor["diff"], "```", "", reason, ""]
    return "\n".join(out).rstrip() + "\n"


def mutmut_version() -> str:
    from importlib.metadata import version

    return f"mutmut {version('mutmut')}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"modules to run, of {', '.join(MODULES)} (default: all); "
                                                   "the results of the others are kept")
    parser.add_argument("--max-children", type=int, default=1, help="mutants checked in parallel")
    parser.add_argument("--render", action="store_true", help="only write MUTATION.md from mutation_results.json")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose among {', '.join(MODULES)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"tool": mutmut_version(), "modules": {}}
    if not args.render:
        results["tool"] = mutmut_version()
        for key in args.modules or list(MODULES):
            summary = run_module(key, args.max_children)
            results["modules"][key] = summary
            print(f"{key:14s} {summary['mutants']:4d} mutants, {summary['killed']} killed, {summary['survived']} "
                  f"survived, {summary['timeout']} timeout, {summary['no_tests']} without tests: score "
                  f"{summary['score']} ({summary['seconds']} s)", flush=True)
            results["modules"] = {k: results["modules"][k] for k in MODULES if k in results["modules"]}
            RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    REPORT.write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
