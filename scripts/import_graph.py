#!/usr/bin/env python3
"""The package's import graph, read from the sources (``ast``): circles and arrows that go up.

    python scripts/import_graph.py            # the layers, circles and upward arrows; exit 1 if any
    python scripts/import_graph.py --edges    # also every folder-to-folder arrow

Every ``import`` counts, the ones inside functions too (a lazy import is still a
dependency). Folders are layers; a module may import its own folder and the layers
below it, never one beside or above (``LAYERS``, lowest first). A circle is a set of
modules that import each other, directly or not. ``test/test_layers.py`` runs the same
checks, and checks that only ``ros/`` and the ROS demo import ROS.
"""
from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "parahydra_ros"
ROOT = Path(__file__).resolve().parents[1]

#: Folders (and top-level modules) by layer, lowest first.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors",),  # user-facing error classes
    ("model", "loss"),  # the paper, by name; the training loss
    ("codec",),  # pixels <-> payloads: conversions, container, the one group-decode policy
    ("sync",),  # grouping, stragglers, missing cameras, the worker (ROS-free)
    ("pipeline", "bagtools"),  # node parameter tables and the launcher; rosbags tools (ROS-free)
    ("data",),  # pixel sources: folders, synthetic rig, bag camera groups
    ("ros", "eval"),  # what imports rclpy; RD evaluation
    ("train", "bag", "cli", "demo"),  # the tools
)
#: Top-level names of ROS packages (and the generated message module). Not ``ament_index_python``:
#: the ROS-free modules may look the package's share directory up with it, falling back without it.
ROS_MODULES = ("rclpy", "rosidl", "rmw", "rcl_interfaces", "sensor_msgs", "std_msgs", "builtin_interfaces",
               "diagnostic_msgs", "message_filters", "launch", "launch_ros", f"{PACKAGE}.msg")
#: Folders that may import ROS: the nodes, and the demo that runs them.
ROS_FOLDERS = ("ros", "demo")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → source file, for every module of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported_names(name: str, path: Path) -> Iterator[str]:
    """Every module name ``name`` imports, absolute. ``from X import y`` names ``X.y`` (a module, or
    a name defined in ``X``: see ``graph``); ``from . import y`` does not also name the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield from (f"{module}.{alias.name}" for alias in node.names)


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module → the package's modules it imports: each imported name resolved to the innermost
    module of the package that holds it (the package's root module left out)."""
    known = modules(root)
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for imported in imported_names(name, path):
            while imported and imported not in known:
                imported = imported.rpartition(".")[0]
            if imported and imported not in (PACKAGE, name):
                targets.add(imported)
        edges[name] = targets
    return edges


def folder(module: str) -> str:
    """The layer unit of a module: its folder under the package, or its own name at the top."""
    return module.split(".")[1] if "." in module else module


def layer_of(unit: str) -> int | None:
    return next((i for i, units in enumerate(LAYERS) if unit in units), None)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def upward_arrows(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a module of a folder that is not in a lower layer (or of a folder not in ``LAYERS``)."""
    bad = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = folder(source), folder(target)
            if a == b:
                continue
            la, lb = layer_of(a), layer_of(b)
            if la is None or lb is None or lb >= la:
                bad.append((source, target))
    return bad


def ros_imports(root: Path = ROOT) -> dict[str, list[str]]:
    """Module → the ROS modules (and modules of ``ros/``) it imports."""
    found = {}
    for name, path in modules(root).items():
        hits = sorted({n for n in imported_names(name, path)
                       if n.split(".")[0] in ROS_MODULES or n.startswith(ROS_MODULES)
                       or n == f"{PACKAGE}.ros" or n.startswith(f"{PACKAGE}.ros.")})
        if hits:
            found[name] = hits
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edges", action="store_true", help="also list every folder-to-folder arrow")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to read (default: this one)")
    args = parser.parse_args(argv)
    edges = graph(args.root)
    print("layers, lowest first: " + " < ".join("/".join(units) for units in LAYERS))
    if args.edges:
        arrows: dict[tuple[str, str], int] = {}
        for source, targets in edges.items():
            for target in targets:
                if folder(source) != folder(target):
                    arrows[folder(source), folder(target)] = arrows.get((folder(source), folder(target)), 0) + 1
        for (a, b), count in sorted(arrows.items()):
            print(f"  {a} -> {b} ({count})")
    found = circles(edges)
    print(f"circles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    up = upward_arrows(edges)
    print(f"upward arrows: {len(up)}")
    for source, target in up:
        print(f"  {source} -> {target}")
    return 1 if found or up else 0


if __name__ == "__main__":
    sys.exit(main())
