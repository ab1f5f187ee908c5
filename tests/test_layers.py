"""The package's layers, read from its own imports (``ast``, including imports inside functions).

``trashnet`` is layered bottom-up as ``LAYERS`` lists: a module may import from its own layer and the ones
below it, never from above, and no two modules import each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from trashnet.core import settings

# Bottom to top. The top-level modules (cli, __main__) and the tool scripts sit above everything.
LAYERS = ("core", "data", "deploy", "nets", "stages", "report", "runner", "tools")
MAX_LINES = 450


def _module_name(path: Path) -> str:
    parts = path.relative_to(settings.PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(settings.PACKAGE_DIR.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports, wherever in the file (a ``from trashnet.x import y`` names
    module ``trashnet.x.y`` when that is a module, else ``trashnet.x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {module for module in found if module in known and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _layer(module: str) -> int:
    if module == "trashnet":  # the root holds only __version__
        return -1
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def test_every_subpackage_is_a_known_layer():
    folders = {path.name for path in settings.PACKAGE_DIR.iterdir()
               if path.is_dir() and (path / "__init__.py").exists()}
    assert folders == set(LAYERS)


def test_imports_point_down_only():
    upward = [f"{module} -> {target}" for module, targets in _graph().items() for target in sorted(targets)
              if _layer(target) > _layer(module)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_circle():
    graph = _graph()
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_size(name):
    lines = len(_modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines (at most {MAX_LINES}): split it by job"


def test_the_checks_can_fail(tmp_path):
    """The graph reader sees imports inside functions and relative imports."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from trashnet.runner import pipeline\n    from ..report import chapter\n")
    known = {"trashnet.runner.pipeline", "trashnet.report.chapter", "trashnet.core.x"}
    assert _imports("trashnet.core.x", source, known) == {"trashnet.runner.pipeline", "trashnet.report.chapter"}
