"""Reading rows from local JSONL / JSON / CSV / Parquet / TXT files, with one-line errors."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from .errors import RewardError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")


def read_records(path: str | Path, error=RewardError) -> list[dict]:
    """Rows of a local file as dicts. `.txt` gives one row per non-empty line under the key 'text'.
    `error` is the exception class raised (callers in other packages pass their own)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise error(f"file '{path}' does not exist; check the path in your config")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = []
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as err:
                            raise error(f"file '{path}' line {number} is not valid JSON ({err.msg}); "
                                        "write one JSON object per line") from None
            return rows
        if suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, list) else data.get("data", [data])
        if suffix == ".csv":
            with path.open(encoding="utf-8", newline="") as handle:
                return list(csv.DictReader(handle))
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        if suffix == ".txt":
            return [{"text": line.rstrip("\n")} for line in path.open(encoding="utf-8") if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, OSError) as err:
        raise error(f"file '{path}' could not be read as {suffix} ({type(err).__name__}: {err}); "
                    "check the file's format") from None
    raise error(f"file '{path}' has an unsupported extension '{suffix}'; use one of {', '.join(SUFFIXES)}")


def column(rows: list[dict], field: str, path: str | Path, error=RewardError) -> list[str]:
    """The `field` of every row as text; a row without it is one line naming the file and field."""
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or field not in row or row[field] is None:
            fields = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise error(f"file '{path}' row {number} has no field '{field}' (fields: {fields}); "
                        f"set the field mapping to one of them")
    return [str(row[field]) for row in rows]
