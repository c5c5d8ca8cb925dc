"""report.html: the report's Markdown rendered by markdown-it-py into one self-contained, safe page."""
import base64
import re

from pipelines.report.html import render_html

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_page_is_self_contained_with_scrolling_tables_and_escaped_text(tmp_path):
    (tmp_path / "pareto.png").write_bytes(PNG)
    md = ("# Run `demo`\n\n## Verdict\n\n- **lines beat soup**: +0.01\n\n"
          "| front | hypervolume |\n|---|---|\n| soup | 0.5 |\n| lines | 0.6 |\n\n"
          "![pareto](pareto.png)\n\n"
          "- *Tell me about the soup* → '<script>alert(1)</script> & <b>bold</b>'\n\n"
          "```yaml\nrun_name: <demo>\n```\n")
    page = render_html(md, tmp_path)
    assert page.startswith("<!doctype html>") and "<h1>Run <code>demo</code></h1>" in page
    assert "<strong>lines beat soup</strong>" in page
    assert re.search(r"<table>.*<th>front</th>.*<td>lines</td>.*</table>", page, re.S)
    assert "table{" in page and "display:block;overflow-x:auto" in page  # wide tables scroll inside the page
    # The figure is inside the page, not a reference to a file beside it.
    assert f'<img src="data:image/png;base64,{base64.b64encode(PNG).decode()}" alt="pareto"' in page
    assert 'src="pareto.png"' not in page
    # Generated text is shown, never interpreted.
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "run_name: &lt;demo&gt;" in page


def embedded_images(page: str) -> list[tuple[str, bytes, str]]:
    """(mime type, decoded bytes, alt text) of every <img> of the page, read back independently of the renderer."""
    return [(mime, base64.b64decode(data), alt) for mime, data, alt in
            re.findall(r'<img src="data:([^;"]+);base64,([A-Za-z0-9+/=]*)" alt="([^"]*)"', page)]


def test_every_image_is_embedded_byte_for_byte_with_its_type(tmp_path):
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "front.svg").write_bytes(svg)
    (tmp_path / "pareto.png").write_bytes(PNG)
    (tmp_path / "data.unknownext").write_bytes(b"\x00\x01raw")
    page = render_html("![a](pareto.png)\n\n![b *c*](figures/front.svg)\n\n![](data.unknownext)\n", tmp_path)
    assert embedded_images(page) == [("image/png", PNG, "a"), ("image/svg+xml", svg, "b c"),
                                     ("application/octet-stream", b"\x00\x01raw", "")]
    assert "src=\"pareto.png\"" not in page and "figures/front.svg" not in page


def test_page_skeleton_and_markdown_features(tmp_path):
    page = render_html("# T\n\nplain *em* and `code`\n\n| a | b |\n|---|--:|\n| 1 | 2 |\n", tmp_path)
    assert page.startswith("<!doctype html><html><head><meta charset='utf-8'><title>report</title><style>")
    assert page.endswith("</style></head><body><h1>T</h1>\n<p>plain <em>em</em> and <code>code</code></p>\n"
                         "<table>\n<thead>\n<tr>\n<th>a</th>\n<th style=\"text-align:right\">b</th>\n</tr>\n</thead>\n"
                         "<tbody>\n<tr>\n<td>1</td>\n<td style=\"text-align:right\">2</td>\n</tr>\n</tbody>\n"
                         "</table>\n</body></html>")
    # Inline and block HTML in the Markdown are text, not markup.
    page = render_html("a <img src=x onerror=alert(1)> b\n\n<div>block</div>\n", tmp_path)
    assert "<img" not in page and "<div>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;div&gt;block&lt;/div&gt;" in page
