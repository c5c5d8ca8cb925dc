"""The tables of a replicated study, as Markdown from its pooled.json (what `make study` writes to
runs/<name>/study/pooled.json), so that the numbers in docs/results.md are the run's own.

    python benchmarks/study_tables.py runs/demo/study/pooled.json                           # prints the tables
    python benchmarks/study_tables.py runs/demo/study/pooled.json --write docs/results.md   # rewrites their regions

With --write, the page's regions `study-hypervolume`, `study-matched-kl` and `study-closeness` (between `<!-- begin: NAME -->` and
`<!-- end: NAME -->`) are replaced and the rest of the page is left as it is.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from marked_regions import write_regions  # noqa: E402

CLOSENESS = ["kl", "ppl_reviews", "ppl_control", "kl_control"]
# The column each closeness metric of the demo gets, in the words of docs/study.md.
CLOSENESS_LABELS = {"kl": "KL of the responses", "ppl_reviews": "perplexity, reviews",
                    "ppl_control": "perplexity, control", "kl_control": "per-token KL, control"}


def _signed(x: float, digits: int = 3) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _interval(row: dict, digits: int = 3) -> str:
    return f"{_signed(row['low'], digits)} … {_signed(row['high'], digits)}"


def _p(p) -> str:
    return "—" if p is None else f"{p:.3f}"


def _verdict(row: dict, margin: float) -> str:
    """The study's own verdict (Holm over the declared family, TOST for equivalence), in the docs' words."""
    return {"a better": f"{row['a']} better", "b better": f"{row['b']} better",
            "equivalent": f"equivalent (±{margin:g})", "not shown": "not shown"}.get(row.get("verdict"),
                                                                                   "estimate only")


def hypervolume_rows(pooled: dict) -> list[str]:
    seeds = [str(s) for s in pooled["seeds"]]
    margin = pooled.get("margin", 0.02)
    return [f"| {r['a']} − {r['b']} | " + " | ".join(_signed(r["per_seed"][s]) for s in seeds)
            + f" | {_signed(r['estimate'])} | {_interval(r)} | {_p(r.get('sign_flip_p'))} | {_p(r.get('holm_p'))} | "
              f"{_verdict(r, margin)} |" for r in pooled["hypervolume"]]


def matched_kl_rows(pooled: dict) -> list[str]:
    seeds = [str(s) for s in pooled["seeds"]]
    return [f"| {r['a']} − {r['b']} | " + " | ".join(_signed(r["per_seed"][s]) for s in seeds)
            + f" | {_signed(r['mean'])} | {_interval(r)} | {_p(r.get('sign_flip_p'))} |"
            for r in pooled.get("matched_kl", [])]


def closeness_rows(pooled: dict, metrics=CLOSENESS) -> list[str]:
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for r in pooled["metrics"]:
        digits = 2 if r["metric"] == "kl" else 3
        cells.setdefault((r["a"], r["b"]), {})[r["metric"]] = f"{_signed(r['estimate'], digits)} ({_interval(r, digits)})"
    return [f"| {a} − {b} | " + " | ".join(row.get(m, "") for m in metrics) + " |" for (a, b), row in cells.items()]


def hypervolume_table(pooled: dict) -> list[str]:
    """The hypervolume table, header first: one column per seed, the pooled estimate, its interval, the verdict."""
    header = ["comparison", *(f"seed {s}" for s in pooled["seeds"]), "mean",
              f"{pooled['level']:.0%} t-interval", "sign-flip p", "Holm p", "verdict"]
    return _header(header) + hypervolume_rows(pooled)


def matched_kl_table(pooled: dict) -> list[str]:
    """Reward at matched KL, header first: one column per seed, the mean over seeds, its t-interval, its p-value."""
    header = ["comparison", *(f"seed {s}" for s in pooled["seeds"]), "mean", f"{pooled['level']:.0%} t-interval",
              "sign-flip p"]
    return _header(header) + matched_kl_rows(pooled)


def closeness_table(pooled: dict, metrics=CLOSENESS) -> list[str]:
    """The closeness table, header first: one column per metric, each cell the estimate and its interval."""
    return _header(["comparison", *(CLOSENESS_LABELS.get(m, m) for m in metrics)]) + closeness_rows(pooled, metrics)


def _header(columns: list[str]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pooled", type=Path)
    parser.add_argument("--write", type=Path, metavar="PAGE",
                        help="replace the study's regions of this Markdown page (e.g. docs/results.md)")
    args = parser.parse_args(argv)
    pooled = json.loads(args.pooled.read_text())
    tables = {"study-hypervolume": "\n".join(hypervolume_table(pooled)),
              "study-matched-kl": "\n".join(matched_kl_table(pooled)),
              "study-closeness": "\n".join(closeness_table(pooled))}
    if args.write:
        try:
            write_regions(args.write, tables)
        except ValueError as error:
            sys.exit(f"error: {args.write}: {error}")
        print(f"wrote {', '.join(tables)} in {args.write}")
    else:
        print("\n\n".join(tables.values()))


if __name__ == "__main__":
    main()
