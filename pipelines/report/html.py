"""report.md as one self-contained HTML page: markdown-it-py (CommonMark with tables) renders it, images are inlined.

Raw HTML in the Markdown is escaped, not passed through: the report quotes generated text, which may contain
anything. Tables scroll sideways inside the page (points tables are wide). The interactive parts (explore.py) come
in as `blocks` (HTML put in place of the image of that name, which stays in report.md), `head` and `tail`.
"""
from __future__ import annotations

import base64
import mimetypes
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
         "table{border-collapse:collapse;font-size:12px;display:block;overflow-x:auto;max-width:100%}"
         "td,th{border:1px solid #ccc;padding:2px 6px;white-space:nowrap}"
         "pre{background:#f6f6f6;padding:1em;overflow:auto}img{max-width:100%}")


def render_html(md: str, out_dir: Path, blocks: dict[str, str] | None = None, head: str = "", tail: str = "") -> str:
    """The page for `md`; images are read from `out_dir` (where the report's figures are) and embedded as data URIs,
    except those named in `blocks`, whose HTML takes their place. `head` goes at the end of <head>, `tail` at the end
    of <body>: both are the report's own markup, never generated text."""
    blocks = blocks or {}
    renderer = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(self, tokens, index, options, env):
        token = tokens[index]
        if token.attrGet("src") in blocks:  # a block element: close the paragraph the image sat in around it
            return f"</p>\n{blocks[token.attrGet('src')]}\n<p>"
        source = out_dir / token.attrGet("src")
        mime = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
        token.attrSet("src", f"data:{mime};base64,{base64.b64encode(source.read_bytes()).decode()}")
        return self.image(tokens, index, options, env)  # markdown-it's own rule: alt text, attributes

    renderer.add_render_rule("image", image)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>report</title><style>{STYLE}</style>"
            f"{head}</head><body>{renderer.render(md)}{tail}</body></html>")
