"""The packages' import rules, checked on the source (no import is executed).

``proxy/`` is arranged in rooms that import one way, bottom to top; a module may import
its own room and the rooms below it, never above, and no two modules may import each
other, directly or around a circle. ``if TYPE_CHECKING:`` imports count: a circle of
annotations is still a circle a reader has to hold in their head. Across packages,
``envoy_bootstrap`` is pure translation (it imports neither ``appmesh_api`` nor
``proxy``), the proxy reads Envoy config only (it never imports ``appmesh_api``), and
``awssigv4``, the SigV4 canonical form the verifier and the signer share, imports none of
the three.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# proxy's rooms, bottom first; a module belongs to the room whose prefix names it.
PROXY_LAYERS: tuple[tuple[str, ...], ...] = (
    ("proxy.stream_info", "proxy.timers"),  # the per-stream record and the timer wheel
    ("proxy.config",),  # Envoy resources compiled into immutable tables
    ("proxy.observe",),  # stats, access-log sinks, X-Ray, the metrics extension, sinks
    ("proxy.upstream",),  # clusters, hosts, pools, health checks, outlier detection
    ("proxy.context",),  # the runtime services connections share
    ("proxy.router",),  # one request: route, attempts, retries, header rules
    ("proxy.codec",),  # downstream HTTP/1.1 and TCP
    ("proxy.listener", "proxy.listener_drain", "proxy.interception"),  # accepting, draining
    ("proxy.admin", "proxy.xds", "proxy.xds_auth", "proxy.sds_client"),  # xds: state < rest, delta
    ("proxy.server",),
    ("proxy.main",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports at module level, ``TYPE_CHECKING`` blocks included
    (``from a import b`` counts as both ``a`` and ``a.b``; callers keep what exists)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    return {
        name: {m for m in imported_modules(path) if m in paths and m != name}
        for name, path in paths.items()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int | None:
    for level, prefixes in enumerate(PROXY_LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return level
    return None


def test_proxy_modules_import_each_other_without_circles():
    found = circles(import_graph("proxy"))
    assert not found, "import circles in proxy/: " + "; ".join(" <-> ".join(c) for c in found)


def test_every_proxy_module_has_a_room():
    homeless = [m for m in import_graph("proxy") if m != "proxy" and layer_of(m) is None]
    assert not homeless, f"add these to PROXY_LAYERS (and docs/architecture.md): {homeless}"


def test_proxy_rooms_import_downwards_only():
    upward = []
    for module, imports in sorted(import_graph("proxy").items()):
        level = layer_of(module)
        for other in sorted(imports):
            target = layer_of(other)
            if level is not None and target is not None and target > level:
                upward.append(f"{module} -> {other}")
    assert not upward, "imports that run up the rooms:\n" + "\n".join(upward)


def test_the_packages_import_one_way():
    rules = {
        "envoy_bootstrap": ("appmesh_api", "proxy"),
        "proxy": ("appmesh_api",),
        "appmesh_api": ("proxy",),
        "awssigv4": ("appmesh_api", "envoy_bootstrap", "proxy"),
    }
    broken = []
    for package, forbidden in rules.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in imported_modules(path):
                if imported.split(".")[0] in forbidden:
                    broken.append(f"{module_name(path)} imports {imported}")
    assert not broken, "\n".join(broken)
