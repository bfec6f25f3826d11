"""The package layout: no import cycle between tada's subpackages, and no oversized file.

Every import of a tada module counts, at the top of a module or inside a function (a
function-local import hides a cycle from Python, not from the design). The graph is over the
top-level parts of tada: its subpackages (``tada.world``, ``tada.scorers``, ``tada.models``,
...) and its top-level modules (``tada.io``, ``tada.cache``, ...).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tada"
MAX_MODULE_LINES = 600
MAX_RULE_LINES = 200


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported(path: Path, tree: ast.AST) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in a module, relative ones resolved.

    ``from a.b import c`` counts as an import of ``a.b.c`` (c may be a submodule); the part
    of tada it lands in is all that matters here, so a name imported from a module is harmless.
    """
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out += [(f"{mod}.{a.name}", node.lineno) for a in node.names]
    return out


def _part(module: str) -> str | None:
    """The top-level part of tada a module belongs to (``tada.world.render`` -> ``tada.world``);
    None outside tada and for the root package itself."""
    parts = module.split(".")
    if parts[0] != "tada" or len(parts) < 2:
        return None
    return f"tada.{parts[1]}"


def _import_graph() -> dict[str, dict[str, list[str]]]:
    """part -> imported part -> ['file:line', ...] (every import site, in file and line order)."""
    sites: dict[str, dict[str, set[tuple[str, int]]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        src = _part(_module_name(path))
        if src is None:
            continue
        for mod, line in _imported(path, tree):
            dst = _part(mod)
            if dst is not None and dst != src:
                sites[src][dst].add((str(path.relative_to(ROOT)), line))
    return {src: {dst: [f"{f}:{n}" for f, n in sorted(where)] for dst, where in parts.items()}
            for src, parts in sites.items()}


def _find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of the graph as a closed list of nodes, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _reaches(graph: dict[str, dict[str, list[str]]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo += list(graph.get(node, {}))
    return False


def _cycle_edges(graph: dict[str, dict[str, list[str]]]) -> list[tuple[str, str]]:
    """Every edge a -> b that lies on some cycle (b leads back to a)."""
    return [(a, b) for a in sorted(graph) for b in sorted(graph[a]) if _reaches(graph, b, a)]


def test_resolves_relative_and_local_imports():
    src = ("from .features import SR\n"
           "def f():\n"
           "    from ..scorers import descriptors\n"
           "    import tada.models.base\n")
    path = PKG / "world" / "_probe.py"  # never written: only its name is used
    found = _imported(path, ast.parse(src))
    assert [m for m, _ in found] == ["tada.world.features.SR", "tada.scorers.descriptors",
                                     "tada.models.base"]
    assert _find_cycle({"a": {"b": ["x"]}, "b": {"a": ["y"]}}) == ["a", "b", "a"]
    assert _find_cycle({"a": {"b": ["x"]}, "b": {}}) is None
    assert _cycle_edges({"a": {"b": ["x"]}, "b": {"a": ["y"], "c": ["z"]}}) == [("a", "b"), ("b", "a")]


def test_no_import_cycle_between_subpackages():
    graph = _import_graph()
    cycle = _find_cycle(graph)
    if cycle:
        lines = [f"import cycle between tada's parts: {' -> '.join(cycle)}", "edges on a cycle:"]
        for a, b in _cycle_edges(graph):
            lines.append(f"  {a} imports {b} at: {', '.join(graph[a][b])}")
        raise AssertionError("\n".join(lines))


def test_world_does_not_import_scorers_or_models():
    """The synthetic world is the lowest layer of the evaluation stack."""
    world = _import_graph().get("tada.world", {})
    upper = ("tada.scorers", "tada.models", "tada.embedded", "tada.embedded_quality", "tada.steering",
             "tada.evaluate")
    bad = {part: sites for part, sites in world.items() if part in upper}
    assert not bad, f"tada.world imports layers above it: {dict(bad)}"


def test_modules_are_under_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted(PKG.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) >= MAX_MODULE_LINES}
    assert not long, f"modules of {MAX_MODULE_LINES} lines or more (split them): {long}"


def test_rules_are_under_200_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "rules").glob("*.smk"))
            if (n := len(p.read_text().splitlines())) >= MAX_RULE_LINES}
    assert not long, f"rule files of {MAX_RULE_LINES} lines or more (split them): {long}"
