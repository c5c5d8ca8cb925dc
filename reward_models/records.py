"""Reading rows from local JSONL / JSON / CSV / Parquet / TXT files, with one-line errors."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from lines.user_files import read_utf8

from .errors import RewardError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")


def read_records(path: str | Path, error=RewardError) -> list[dict]:
    """Rows of a local file as dicts. `.txt` gives one row per non-empty line under the key 'text'.
    `error` is the exception class raised (callers in other packages pass their own)."""
    return read_located_records(path, error)[0]


def _lines(text: str) -> list[str]:
    """Lines as a text-mode file reads them (\\n, \\r\\n or \\r), not str.splitlines, which also splits at
    U+2028 and other characters a JSON string may hold."""
    return [line.rstrip("\r\n") for line in io.StringIO(text, newline=None)]


def read_located_records(path: str | Path, error=RewardError) -> tuple[list[dict], list[str]]:
    """(rows, where each row is): like `read_records`, with "<path>:<line>" (or "<path> row <i>" where a format
    has no lines, JSON and Parquet) for every row, so a bad value can be reported where the user will find it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise error(f"file '{path}' does not exist; check the path in your config")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            # deferred: pyarrow is optional (it comes with datasets) and heavy; only Parquet files need it
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
            return rows, [f"{path} row {i}" for i in range(len(rows))]
        if suffix not in SUFFIXES:
            raise error(f"file '{path}' has an unsupported extension '{suffix}'; use one of {', '.join(SUFFIXES)}")
        text = read_utf8(path, error)
        if suffix == ".jsonl":
            rows, where = [], []
            for number, line in enumerate(_lines(text), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise error(f"file '{path}' line {number} is not valid JSON ({err.msg}); "
                                    "write one JSON object per line") from None
                    where.append(f"{path}:{number}")
            return rows, where
        if suffix == ".json":
            data = json.loads(text)
            rows = data if isinstance(data, list) else data.get("data", [data]) if isinstance(data, dict) else [data]
            return rows, [f"{path} row {i}" for i in range(len(rows))]
        if suffix == ".csv":
            reader = csv.DictReader(io.StringIO(text, newline=""))
            rows, where = [], []
            for row in reader:
                if None in row:  # more fields than the header: an unquoted comma would cut a text short
                    raise error(f"{path}:{reader.line_num}: the row has more fields than the header "
                                f"({len(reader.fieldnames or [])}); quote fields that contain commas")
                rows.append(row)
                where.append(f"{path}:{reader.line_num}")
            return rows, where
        numbered = [(n, line) for n, line in enumerate(_lines(text), 1) if line.strip()]  # .txt
        return [{"text": line} for _, line in numbered], [f"{path}:{n}" for n, _ in numbered]
    except (ValueError, csv.Error, OSError, RecursionError) as err:  # ValueError: JSON, pyarrow's ArrowInvalid
        raise error(f"file '{path}' could not be read as {suffix} ({type(err).__name__}: {err}); "
                    "check the file's format") from None


def column(rows: list[dict], field: str, path: str | Path, error=RewardError) -> list[str]:
    """The `field` of every row as text; a row without it is one line naming the file and field."""
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or field not in row or row[field] is None:
            fields = sorted(map(str, row)) if isinstance(row, dict) else type(row).__name__
            raise error(f"file '{path}' row {number} has no field '{field}' (fields: {fields}); "
                        f"set the field mapping to one of them")
    return [str(row[field]) for row in rows]
