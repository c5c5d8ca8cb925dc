"""Regions of a Markdown page that a measuring script owns.

A page marks each region with `<!-- begin: NAME -->` and `<!-- end: NAME -->` on lines of their own; a script
replaces the text between them with what it measured and leaves everything around them as written, so the page's
figures are the script's output, never typed by hand.
"""
from __future__ import annotations

import re
from pathlib import Path

from lines.atomic import write_text


def begin_marker(name: str) -> str:
    return f"<!-- begin: {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- end: {name} -->"


def region(text: str, name: str) -> str:
    """The text between a region's markers, without the marker lines."""
    match = _region_pattern(name).search(text)
    if match is None:
        raise ValueError(f"no region {name!r}: the page needs the lines {begin_marker(name)} and {end_marker(name)}")
    return match["body"]


def replace_regions(text: str, contents: dict[str, str]) -> str:
    """`text` with each named region's body replaced by its new content; every region must be marked exactly once."""
    for name, content in contents.items():
        pattern = _region_pattern(name)
        found = len(pattern.findall(text))
        if found != 1:
            raise ValueError(f"region {name!r} is marked {found} times; the page needs the lines "
                             f"{begin_marker(name)} and {end_marker(name)} exactly once")
        # A function as replacement, so that backslashes in the content are kept as they are.
        text = pattern.sub(lambda m: m["begin"] + content.rstrip("\n") + "\n" + m["end"], text)
    return text


def write_regions(path: str | Path, contents: dict[str, str]) -> Path:
    """Replace the named regions of the page at `path` (written atomically; the rest of the page is unchanged)."""
    path = Path(path)
    return write_text(path, replace_regions(path.read_text(encoding="utf-8"), contents))


def _region_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(?P<begin>^{re.escape(begin_marker(name))}\n)(?P<body>.*?)(?P<end>^{re.escape(end_marker(name))}$)",
                      re.MULTILINE | re.DOTALL)
