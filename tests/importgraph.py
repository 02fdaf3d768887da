"""The package's import graph, read from the source (``ast``), and the one-way rules between its stations.

A *station* is a top-level module or subpackage of ``latentinfer`` (``program``, ``methods``, ``bundle`` ...).
:func:`violations` returns every import that breaks a rule of the layout (README "Layout"); the test suite
asserts it is empty for the package and non-empty for a copy with a planted forbidden import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

#: Stations that sit above the core: they may import anything; nothing in the core may import them.
APP = {"cli", "report", "runner", "__main__"}
#: Old module names kept as re-exports of the moved ones (ignored by the rules: they only point at the new home).
COMPAT = {"inference", "card", "forward"}
#: The front door ``latentinfer.Analysis``: above the methods, below the app layer.
FACADE = {"analysis"}
#: Hidden (in-function) imports of another station are allowed in the CLI (each subcommand imports what it needs
#: when it runs) and where marked ``# deferred: <reason>`` on the import line.
LAZY_OK = {"cli"}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    hidden: bool  # inside a function or class body
    line: int
    marked: bool  # the line carries "# deferred:"

    @property
    def stations(self) -> tuple[str, str]:
        return station(self.source), station(self.target)


def station(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<top>"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def edges(root: Path, package: str = "latentinfer") -> list[Edge]:
    """Every import of a ``package`` module by a ``package`` module under ``root``."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        mod = module_name(root, path)
        is_pkg = path.name == "__init__.py"
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets = [f"{target}.{a.name}" if target == package else target for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            marked = "# deferred:" in lines[node.lineno - 1] or (node.lineno >= 2 and "# deferred:" in lines[node.lineno - 2])
            for t in targets:
                if t == package or t.startswith(package + "."):
                    out.append(Edge(mod, t, id(node) not in top, node.lineno, marked))
    return out


def _is(target: str, *prefixes: str) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def violations(root: Path, package: str = "latentinfer") -> list[str]:
    """Imports that break the layout's rules, one line each (empty when the layout holds)."""
    P = package
    bad = []
    graph: dict[str, set[str]] = {}
    for e in edges(root, package):
        src, dst = e.stations
        if src == dst or src in COMPAT or dst == "<top>" and e.target in (P, f"{P}.__version__"):
            continue
        where = f"{e.source}:{e.line} imports {e.target}"
        # 1. core stations never import the app layer (cli, report, runner)
        if dst in APP and src not in APP:
            bad.append(f"{where}: only cli/, report/ and runner may import {dst}")
        # 2. the facade is for users and the app layer only
        if dst in FACADE and src not in APP | FACADE:
            bad.append(f"{where}: core stations take a program.Program, not the latentinfer.Analysis front door")
        # 3. likelihoods import no sampler, no program, nothing downstream
        if src == "likelihoods" and dst in {"methods", "inference", "program", "amortized", "coverage", "evidence", "tension", "ive", "simulate"}:
            bad.append(f"{where}: likelihoods import no sampler and nothing downstream of them")
        # 4. config validates through each method's Settings and imports no sampler (only methods.base)
        if e.source == f"{P}.config" and _is(e.target, f"{P}.methods", f"{P}.inference", f"{P}.amortized") and e.target != f"{P}.methods.base":
            bad.append(f"{where}: config imports no sampler (look methods up in methods.base.METHODS)")
        # 5. bundle/ is runtime only: nothing from training or simulation
        if src == "bundle" and dst in {"ive", "simulate", "program", "methods", "amortized"}:
            bad.append(f"{where}: bundle/ is the runtime station and imports nothing from training")
        # 6. the program imports no method
        if src == "program" and dst in {"methods", "inference", "amortized", "evidence", "coverage", "tension", "ive"}:
            bad.append(f"{where}: the program imports no method")
        # 7. simulation does not import training
        if src == "simulate" and dst == "ive":
            bad.append(f"{where}: simulate/ imports nothing from ive/ (shared names live in grid)")
        # 8. hidden imports of another station only in the CLI or with a reason
        if e.hidden and src not in LAZY_OK and not e.marked:
            bad.append(f"{where} inside a function: import at the top, or mark '# deferred: <reason>'")
        if src not in APP | COMPAT | FACADE:
            graph.setdefault(src, set()).add(dst)
    # 9. no cycles between core stations
    for cycle in _cycles(graph):
        bad.append("station cycle: " + " -> ".join(cycle))
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    out, seen = [], set()
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    key = frozenset(path)
                    if key not in seen:
                        seen.add(key)
                        out.append(path + [start])
                elif nxt not in path and nxt in graph:
                    stack.append((nxt, path + [nxt]))
    return out
