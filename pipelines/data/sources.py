"""One split of a dataset through `datasets`: a hub id, or a local copy laid out as on the hub."""
from __future__ import annotations

from pathlib import Path

from lines.errors import first_line

from ..errors import PipelineError


def load_split(source: str, split: str, data_dir: str | None = None, cache_dir: str | None = None) -> list[dict]:
    """The rows of `split` (of the `data_dir` subset, if given) as dicts. `source` is a hub dataset id or a local
    directory holding the dataset's own files (e.g. helpful-base/train.jsonl.gz for hh-rlhf)."""
    try:
        import datasets  # optional (the pipeline extra), and heavy
    except ImportError:
        raise PipelineError("preparing data needs the `datasets` package (pipeline extra)") from None
    local = Path(source).expanduser()
    if (source.startswith((".", "/", "~")) or source.count("/") > 1) and not local.is_dir():
        raise PipelineError(f"--source '{source}' is not a directory; give the dataset's hub id or a local copy "
                            "laid out as on the hub")
    if local.is_dir() and data_dir is not None and not (local / data_dir).is_dir():
        raise PipelineError(f"--source '{source}' has no '{data_dir}' directory; a local copy keeps the hub "
                            f"layout ({data_dir}/train.jsonl.gz, ...)")
    # datasets' progress bars would interleave with a one-line error on stderr; say what is read instead.
    datasets.disable_progress_bars()
    print(f"reading {source}" + (f" {data_dir}" if data_dir else "") + f" [{split}]", flush=True)
    try:
        data = datasets.load_dataset(str(local) if local.is_dir() else source, data_dir=data_dir, split=split,
                                     cache_dir=cache_dir)
    except Exception as err:  # datasets raises many types (connection, file, value); all mean "cannot load"
        where = f"{source}" + (f" ({data_dir})" if data_dir else "")
        raise PipelineError(f"cannot load split '{split}' of {where} ({first_line(err)}); without hub access give "
                            "a local copy with --source") from None
    return [dict(row) for row in data]
