"""The package's floors (docs/architecture.md): no two project modules import each other, even
through a chain or only for type checking (found statically: nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in (REPO / "ultradet").rglob("*.py")}


def _module_level_imports(body: list[ast.stmt]):
    """Import statements outside functions (``if TYPE_CHECKING:`` and ``try:`` blocks included)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try)):
            yield from _module_level_imports(node.body + node.orelse)


def _imports(path: Path) -> set[str]:
    """Project modules ``path`` imports: ``from a.b import c`` names ``a.b.c`` when that is a
    module, else ``a.b``."""
    found = set()
    for node in _module_level_imports(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif node.module and not node.level:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            found |= submodules if len(submodules) == len(node.names) else {node.module}
    return found & MODULES.keys()


def test_no_import_circles():
    graph = {name: _imports(path) - {name} for name, path in MODULES.items()}

    def path_back(start: str) -> list[str] | None:
        """A chain of imports from ``start`` back to itself, if any (depth first)."""
        stack, seen = [(start, [start])], set()
        while stack:
            module, chain = stack.pop()
            for dep in sorted(graph[module]):
                if dep == start:
                    return chain + [start]
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, chain + [dep]))
        return None

    circles = {" -> ".join(chain) for chain in map(path_back, sorted(graph)) if chain}
    assert not circles, "import circles:\n  " + "\n  ".join(sorted(circles))
