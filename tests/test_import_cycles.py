"""No import cycles among the project's modules, counting imports inside functions too, and every import inside a
function says why it is deferred.

A cycle hidden in a function body still couples two modules both ways; it only moves the failure from import time
to the first call. The graph is read from the source (ast), so the test sees every import, not only those a run
happens to execute. Edges are explicit imports: `from .x import y` is an edge to `pkg.x` (and to `pkg.x.y` when that
is a module), `from pkg import name` an edge to `pkg` (its __init__). Imports under `if TYPE_CHECKING:` are left out:
they never run.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lines", "pipelines", "reward_models")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imports_of(tree: ast.AST):
    """(import node, inside a function?) for every import that can run."""
    def walk(node, in_function):
        for child in ast.iter_child_nodes(node):
            if is_type_checking_block(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                      ast.Lambda)))
    yield from walk(tree, False)


def targets(node, importer: str, is_package: bool, modules: dict) -> set[str]:
    """The project modules an import statement loads explicitly."""
    found = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in modules:
                found.add(alias.name)
        return found
    if node.level:
        anchor = importer.split(".") if is_package else importer.split(".")[:-1]
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in modules:
            found.add(sub)
        elif base in modules:
            found.add(base)
    return found


def import_graph():
    modules = project_modules()
    graph, deferred = {m: set() for m in modules}, []
    for name, path in modules.items():
        source = path.read_text()
        lines = source.splitlines()
        for node, in_function in imports_of(ast.parse(source)):
            hits = targets(node, name, path.name == "__init__.py", modules)
            graph[name] |= hits - {name}
            if in_function:
                deferred.append((name, node.lineno, lines))
    return graph, deferred


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def test_no_import_cycles():
    graph, _ = import_graph()
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles (modules that import each other, directly or through others):\n" + "\n".join(
        "  " + " ↔ ".join(c) for c in cycles)


def test_every_deferred_import_says_why():
    """An import inside a function defers a heavy dependency (torch, transformers, trl, vllm, ...) or an optional
    one; a comment on its line or the line above says which, so the next reader knows it is not hiding a cycle."""
    _, deferred = import_graph()
    silent = [f"{name}:{lineno}" for name, lineno, lines in deferred
              if "#" not in lines[lineno - 1] and not lines[lineno - 2].strip().startswith("#")]
    assert not silent, f"{len(silent)} imports inside functions without a comment saying why: " + ", ".join(silent)


def test_the_checker_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]


def test_relative_and_function_level_imports_are_edges(tmp_path):
    tree = ast.parse("from . import sibling\nfrom .child import thing\n"
                     "def f():\n    from ..other import name  # deferred: heavy\n"
                     "if TYPE_CHECKING:\n    from .hidden import X\n")
    modules = {"pkg": None, "pkg.sub": None, "pkg.sub.sibling": None, "pkg.sub.child": None, "pkg.other": None,
               "pkg.sub.hidden": None}
    found = [(targets(n, "pkg.sub.mod", False, modules), f) for n, f in imports_of(tree)]
    assert found == [({"pkg.sub.sibling"}, False), ({"pkg.sub.child"}, False), ({"pkg.other"}, True)]
