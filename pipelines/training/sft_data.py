"""SFT rows: the demo's generated reviews, or a local text / chat file."""
from __future__ import annotations

import json

from reward_models.records import read_records

from ..config.training import SFTData
from ..demo.data import demo_corpus
from .errors import TrainingError


def sft_rows(spec: SFTData, seed: int) -> list[dict]:
    """Rows for trl's SFTTrainer: {'text': ...} or {'messages': [{role, content}, ...]}."""
    if spec.source == "demo":
        return [{"text": text} for text in demo_corpus(spec.n, seed, spec.review_share)]
    rows = read_records(spec.path, error=TrainingError)
    column = spec.column
    out = []
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or row.get(column) is None:
            raise TrainingError(f"sft data '{spec.path}' row {number} has no field '{column}'; set "
                                "base.sft.data.field to the column holding the "
                                f"{'conversation' if spec.format == 'chat' else 'text'}")
        value = row[column]
        if spec.format == "chat":
            if isinstance(value, str):  # CSV cells hold JSON text
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    value = None
            if not (isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m
                                                               for m in value)):
                raise TrainingError(f"sft data '{spec.path}' row {number}: field '{column}' is not a list of "
                                    "{role, content} messages; use format: text for plain text")
            out.append({"messages": value})
        else:
            out.append({"text": str(value)})
    if not out:
        raise TrainingError(f"sft data '{spec.path}' is empty; give a file with at least one row")
    return out


def row_texts(rows: list[dict]) -> list[str]:
    """Every piece of text in the rows (tokenizer training input)."""
    texts = []
    for row in rows:
        if "messages" in row:
            texts.extend(str(m["content"]) for m in row["messages"])
        else:
            texts.append(row["text"])
    return texts
