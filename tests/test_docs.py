"""The documentation holds together: a short README that starts with its two commands, links that land on a file
(and heading) that exists, and every page of docs/ reachable from the README."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 250
# [text](target) and ![alt](target); the target ends at the first space or closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(path: Path) -> list[str]:
    """The page's lines outside fenced code blocks, with inline code spans removed (neither holds links or headings)."""
    lines, in_fence = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(re.sub(r"`+[^`]*`+", "", line))
    return lines


def links(path: Path) -> list[str]:
    return [m[1] for line in prose_lines(path) for m in LINK.finditer(line)]


def local_links(path: Path) -> list[str]:
    return [target for target in links(path) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped, spaces as hyphens, a repeated
    heading numbered."""
    seen: dict[str, int] = {}
    for line in _heading_lines(path):
        text = re.sub(r"[`*]", "", line.lstrip("#").strip())
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            slug = f"{slug}-{seen[slug]}"
            seen[slug] = 0
    return set(seen)


def _heading_lines(path: Path) -> list[str]:
    lines, in_fence = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and re.match(r"#{1,6} ", line):
            lines.append(line)
    return lines


def resolve(page: Path, target: str) -> tuple[Path, str]:
    """The file a link points at and its anchor ('' for none); a bare '#anchor' points into the page itself."""
    file_part, _, anchor = target.partition("#")
    return (page.parent / file_part).resolve() if file_part else page, anchor


def test_the_readme_is_a_short_guide():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES


def test_the_readme_starts_with_the_two_commands_and_ci_runs_the_test_command():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and lines[1] == ""
    assert lines[2] == "```bash" and lines[5] == "```"
    assert lines[3].startswith("make demo ") and lines[4].startswith("make test ")
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_there_are_docs_pages():
    assert len(PAGES) >= 5


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands_on_a_file_and_heading_that_exist(page):
    broken = []
    for target in local_links(page):
        path, anchor = resolve(page, target)
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (path.suffix != ".md" or anchor not in anchors(path)):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {path.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = {README.resolve()}, [README]
    while todo:
        page = todo.pop()
        for target in local_links(page):
            path, _ = resolve(page, target)
            if path.suffix == ".md" and path.exists() and path not in reached:
                reached.add(path)
                todo.append(path)
    unreachable = [str(p.relative_to(ROOT)) for p in PAGES if p.resolve() not in reached]
    assert not unreachable


def test_the_anchor_rule_follows_github_headings(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# The demo's answer: the `study`\n\n```yaml\n# not a heading\n```\n\n## PPO\n\n## PPO\n")
    assert anchors(page) == {"the-demos-answer-the-study", "ppo", "ppo-1"}
