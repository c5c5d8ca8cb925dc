"""`lines` command line: `lines merge RECIPE.yaml OUT_DIR`, `lines export-mergekit RECIPE.yaml`, plus the commands
other packages add.

The merge engine knows nothing of the packages built on it. They add subcommands through the entry-point group
`lines.commands`: each entry names a function `register(subparsers)` that adds its parser and sets `func`
(this project's pipelines add `lines report RUN_DIR` that way, see pyproject.toml).
"""
from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

from .atomic import write_text
from .errors import STOPS, LinesError, exit_process, report_stop, stop_on_signals
from .merge import merge
from .mergekit_export import export_mergekit, to_yaml
from .ranks import LaunchRanks

COMMAND_GROUP = "lines.commands"


def _merge(args: argparse.Namespace) -> int:
    # Under `accelerate launch` or `torchrun` the processes share the merge's shards; with `--device cuda` each
    # computes on its own GPU (the launcher's LOCAL_RANK).
    device = args.device
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    with LaunchRanks() as ranks:
        out = merge(args.recipe, args.out_dir, force=args.force, allow_pickle=args.allow_pickle,
                    progress=not args.quiet, ranks=ranks, device=device)
    if not args.quiet and ranks.is_main:
        print(f"merged checkpoint written to {out}")
    return 0


def _export_mergekit(args: argparse.Namespace) -> int:
    if args.output and Path(args.output).exists() and not args.force:
        raise LinesError(f"{args.output}: already exists; choose another path or pass --force")
    config, notes = export_mergekit(args.recipe, allow_pickle=args.allow_pickle)
    text = to_yaml(config, [f"mergekit config reproducing {args.recipe} (lines export-mergekit)"]
                   + [f"note: {n}" for n in notes])
    if args.output:
        try:
            write_text(Path(args.output), text)
        except OSError as exc:
            raise LinesError(f"{args.output}: cannot write the config there ({exc.strerror or exc}); choose another "
                             "path") from None
    else:
        sys.stdout.write(text)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lines", description="Rewarded soups with LiNeS layer scaling.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("merge", help="merge policies as a YAML recipe says and write a checkpoint")
    p.add_argument("recipe", help="YAML recipe (base_model, models, method, parameters, lines, dtype, ...), or a "
                                  "mergekit config (merge_method, ...), merged with mergekit's semantics")
    p.add_argument("out_dir", help="output directory (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it exists (only after success)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="accept pickle .bin checkpoints (loaded with torch.load(weights_only=True))")
    p.add_argument("--quiet", action="store_true", help="no progress bars or messages")
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help="where the merge computes: cpu (default), cuda (under a launcher, each process's own GPU) "
                        "or cuda:N; files are read and written on the host either way")
    p.set_defaults(func=_merge)
    p = sub.add_parser("export-mergekit", help="write the mergekit config that reproduces a recipe (LiNeS as per-layer "
                                               "gradients), for mergekit-yaml")
    p.add_argument("recipe", help="YAML recipe (or mergekit config with a lines: block)")
    p.add_argument("-o", "--output", help="write the config here (default: stdout)")
    p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--allow-pickle", action="store_true", help="accept pickle .bin checkpoints")
    p.set_defaults(func=_export_mergekit)
    for entry in entry_points(group=COMMAND_GROUP):
        entry.load()(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with stop_on_signals():
            return args.func(args)
    except STOPS as exc:
        return report_stop(exc)


def run() -> None:
    """The `lines` command: main(), then the process ends with its status (lines.errors.exit_process)."""
    exit_process(main())


if __name__ == "__main__":
    run()
