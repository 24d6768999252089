"""The layout stays what docs/architecture.md says: packages by pipeline stage, no import
cycle anywhere (imports inside functions included), small modules."""

from __future__ import annotations

from pathlib import Path

import grimp

PACKAGE = Path(__file__).resolve().parents[1] / "nntrain"


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), over every import grimp
    finds: module level, inside functions and under TYPE_CHECKING alike."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if not w.startswith("nntrain"):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(sorted(scc))

    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles_counting_function_level_imports():
    graph = grimp.build_graph("nntrain", exclude_type_checking_imports=False)
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for m in ("nntrain.a", "nntrain.b", "nntrain.c"):
        graph.add_module(m)
    graph.add_import(importer="nntrain.a", imported="nntrain.b")
    graph.add_import(importer="nntrain.b", imported="nntrain.a")
    graph.add_import(importer="nntrain.b", imported="nntrain.c")
    assert _cycles(graph) == [["nntrain.a", "nntrain.b"]]


def test_at_most_eight_modules_at_the_top_and_none_over_400_lines():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}
