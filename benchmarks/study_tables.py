"""The README's tables of a replicated study, printed as Markdown from its pooled.json (what `make study` writes to
runs/<name>/study/pooled.json), so that the numbers in the README are the run's own.

    python benchmarks/study_tables.py runs/demo/study/pooled.json
"""
import argparse
import json
from pathlib import Path

CLOSENESS = ["kl", "ppl_reviews", "ppl_control", "kl_control"]


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _interval(row: dict, digits: int = 3) -> str:
    return f"{_signed(row['low'], digits)} … {_signed(row['high'], digits)}"


def _verdict(row: dict) -> str:
    """The study's own verdict (its `direction`, the project's one significance rule), in the README's words."""
    return {1: "LiNeS better", -1: "LiNeS worse", 0: "no clear difference"}[row["direction"]]


def hypervolume_rows(pooled: dict) -> list[str]:
    seeds = [str(s) for s in pooled["seeds"]]
    return [f"| {r['a']} − {r['b']} | " + " | ".join(_signed(r["per_seed"][s]) for s in seeds)
            + f" | {_signed(r['estimate'])} | {_interval(r)} | {_verdict(r)} |" for r in pooled["hypervolume"]]


def closeness_rows(pooled: dict, metrics=CLOSENESS) -> list[str]:
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in pooled["metrics"]:
        digits = 2 if r["metric"] == "kl" else 3
        cells.setdefault((r["a"], r["b"]), {})[r["metric"]] = f"{_signed(r['estimate'], digits)} ({_interval(r, digits)})"
    return [f"| {a} − {b} | " + " | ".join(row.get(m, "") for m in metrics) + " |" for (a, b), row in cells.items()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pooled", type=Path)
    args = parser.parse_args(argv)
    pooled = json.loads(args.pooled.read_text())
    print("\n".join(hypervolume_rows(pooled)))
    print()
    print("\n".join(closeness_rows(pooled)))


if __name__ == "__main__":
    main()
