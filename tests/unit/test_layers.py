"""The layers of the package and what each may import (README: Plugins and embedding). Every import
of every module counts, those under ``if TYPE_CHECKING:`` and inside functions too; the graph of
them has no circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "gefyra"

_MODEL = ("gefyra.core.model",)
_KUBE = (*_MODEL, "gefyra.core.kube")
_SPI = (*_KUBE, "gefyra.core.spi")
_ENGINE = (*_SPI, "gefyra.core.engine")
_BASE = ("gefyra.errors", "gefyra._version")
#: The built-in plugins' list (gefyra/plugins/__init__.py), which the programs that build a plugin
#: manager hand to the engine; never a plugin's own modules.
_BUILTIN_LIST = "=gefyra.plugins"

#: Layer (a package, or one module) -> what its modules may import besides their own layer:
#: packages (their modules included) or, with "=", exactly one module. Most specific layer wins.
LAYERS: dict[str, tuple[str, ...]] = {
    "gefyra._version": (),
    "gefyra.errors": (),
    "gefyra.core.model": _BASE,
    "gefyra.core.kube": (*_BASE, *_MODEL),
    "gefyra.core.spi": (*_BASE, *_KUBE),
    "gefyra.core.engine": (*_BASE, *_SPI),
    "gefyra.plugins": (*_BASE, *_SPI, "=gefyra"),  # gefyra.hookimpl
    "gefyra.testing": (*_BASE, *_SPI),
    "gefyra.client": (*_BASE, *_ENGINE, _BUILTIN_LIST),
    "gefyra.operator": (*_BASE, *_ENGINE, _BUILTIN_LIST),
    # The face: the package itself, the function API, the command line and what it shows.
    "=gefyra": (*_BASE, *_ENGINE, "gefyra.client"),
    "=gefyra.api": (*_BASE, *_ENGINE, "gefyra.client", "=gefyra"),
    "=gefyra.cli": (*_BASE, *_ENGINE, "gefyra.client", "gefyra.operator", "=gefyra", "=gefyra.logs",
                    "=gefyra.progress", "=gefyra.mcp_server"),
    "=gefyra.mcp_server": (*_BASE, *_ENGINE, "gefyra.client", "=gefyra"),
    "=gefyra.progress": (*_BASE, *_ENGINE),
    "=gefyra.logs": (),
    "=gefyra.__main__": ("=gefyra.cli",),
    "=gefyra.core": (),
}

#: Imports that break the rules today, as (importer, imported); empty when the layers hold.
ALLOWED_VIOLATIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (PACKAGE.parent / relative).with_suffix(".py").is_file() or (PACKAGE.parent / relative / "__init__.py").is_file()


def _imports(path: Path) -> Iterator[str]:
    """The gefyra modules a module imports (``from A import b`` is A.b where that is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found = [f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names]
        else:
            continue
        yield from (f for f in found if f == "gefyra" or f.startswith("gefyra."))


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): set(_imports(p)) - {_module_name(p)} for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    if f"={module}" in LAYERS:
        return f"={module}"
    candidates = [layer for layer in LAYERS if not layer.startswith("=")
                  and (module == layer or module.startswith(layer + "."))]
    assert candidates, f"{module} belongs to no layer: add it to LAYERS"
    return max(candidates, key=len)


def _allowed(importer: str, imported: str) -> bool:
    layer = _layer(importer)
    own = layer.lstrip("=")
    if not layer.startswith("=") and (imported == own or imported.startswith(own + ".")):
        return True
    for rule in LAYERS[layer]:
        if rule.startswith("="):
            if imported == rule[1:]:
                return True
        elif imported == rule or imported.startswith(rule + "."):
            return True
    return False


def test_every_import_keeps_to_the_layer_table() -> None:
    broken = {(importer, imported) for importer, imports in _graph().items() for imported in imports
              if not _allowed(importer, imported)}
    assert sorted(broken - ALLOWED_VIOLATIONS) == []
    assert sorted(ALLOWED_VIOLATIONS - broken) == [], "an allowed violation is gone: take it off the list"


def test_the_allow_list_is_empty() -> None:
    assert ALLOWED_VIOLATIONS == set()


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []


@pytest.mark.parametrize(("importer", "imported", "allowed"), [
    ("gefyra.core.model.names", "gefyra.core.kube.cluster", False),
    ("gefyra.core.kube.cluster", "gefyra.core.model.names", True),
    ("gefyra.plugins.docker", "gefyra.client.session", False),
    ("gefyra.plugins.docker", "gefyra", True),
    ("gefyra.client.session", "gefyra.plugins", True),
    ("gefyra.client.session", "gefyra.plugins.docker", False),
    ("gefyra.operator.bridges", "gefyra.client.bridge", False),
])
def test_the_rules_would_catch_a_wrong_import(importer: str, imported: str, allowed: bool) -> None:
    assert _allowed(importer, imported) is allowed
