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
