"""The import graph runs one way: core <- domains <- ops <- cli, and no module imports itself back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "dataflows", "quality")
DOMAINS = ("simulate", "ingest", "streams", "billing", "churn", "sharing", "oss")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules that ``path`` imports anywhere in its body (function-level imports too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
        else:
            continue
        out.update(n for n in names if n in known)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_walk_sees_real_edges():
    edges = graph()
    assert "pipelines.core.config" in edges["pipelines.core.lake"]
    assert "pipelines.streams.kpi" in edges["dataflows.cell_kpi"]
    assert len(edges) > 60


def test_core_imports_only_core():
    bad = {m: sorted(t for t in ts if not t.startswith("pipelines.core")) for m, ts in graph().items() if m.startswith("pipelines.core")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_nothing_imports_the_cli():
    bad = {m: sorted(t for t in ts if t.startswith("pipelines.cli")) for m, ts in graph().items() if not m.startswith("pipelines.cli")}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_domains_never_import_ops():
    domain = tuple(f"pipelines.{d}" for d in DOMAINS)
    bad = {m: sorted(t for t in ts if t.startswith("pipelines.ops")) for m, ts in graph().items() if m.startswith(domain)}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_every_module_has_a_docstring():
    missing = [name for name, path in modules().items() if ast.get_docstring(ast.parse(path.read_text())) is None]
    assert missing == []
