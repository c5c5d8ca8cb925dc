"""`lines report RUN_DIR`: regenerate a run's report from its cached sweep, computing nothing.

Registered as a `lines` subcommand through the `lines.commands` entry-point group (pyproject.toml), so the
merge engine never imports the pipelines.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser("report", help="regenerate a run's report from its cached sweep (computes nothing)")
    parser.add_argument("run_dir", help="runs/<name>")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from . import build_report  # deferred: the report loads matplotlib, which `lines` needs only for this command

    print(f"report written to {build_report(args.run_dir)}")
    return 0
