"""The package's import layers: arrows point down only, and the library never imports an entry point.

    python tests/test_layers.py      # prints each module's layer and what it imports from cvaezoo
"""

from __future__ import annotations

import ast
from pathlib import Path

import cvaezoo

PACKAGE = Path(cvaezoo.__file__).resolve().parent  # the package under test (tests/test_new_model.py tests a copy)
# lowest first; a module may import from its own layer and the ones below it. A layer names modules and packages:
# a module of a package (models.cvae1, data.idx) is in its package's layer, so adding one needs no entry here.
LAYERS: list[tuple[str, set[str]]] = [
    ("basics", {"errors", "arguments", "checkpoint_files", "attributes", "viz", "commit"}),
    ("distributions and nets", {"distributions", "nets"}),
    ("data", {"data"}),
    ("models", {"models"}),
    ("using models", {"checkpoints", "exported", "hub", "inference", "sample_quality", "robustness", "loggers",
                      "callbacks", "collect"}),
    ("figures", {"figures"}),
    ("run library", {"config_types", "runs"}),
    ("trained runs", {"trained_run"}),
    ("tools", {"tools"}),
    ("sharing", {"export"}),
    ("entry points", {"train", "cli", "reference", "serve"}),
]
NAMED = {name: depth for depth, (_, names) in enumerate(LAYERS) for name in names}


def layer_of(module: str) -> int | None:
    """The layer of a module: its own entry, else its package's (the longest dotted prefix with one)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in NAMED:
            return NAMED[".".join(parts[:end])]
    return None


def cvaezoo_imports(path: Path) -> set[str]:
    """The cvaezoo modules a file imports, anywhere in it (lazy imports count), without the package prefix."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and (node.module + ".").startswith("cvaezoo."):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # from cvaezoo(.models) import cli
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cvaezoo."))
    return {module for module in map(existing_module, found) if module}


def existing_module(name: str) -> str | None:
    """cvaezoo.models.base.X -> "models.base" if that module exists, else its package, ...; None for none."""
    parts = name.removeprefix("cvaezoo.").split(".")
    while parts and not ((PACKAGE / Path(*parts)).with_suffix(".py").is_file() or (PACKAGE / Path(*parts)).is_dir()):
        parts.pop()
    return ".".join(parts) or None


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): cvaezoo_imports(p) for p in sorted(PACKAGE.rglob("*.py")) if module_name(p) != ""}


def test_every_form_of_import_is_seen(tmp_path):
    source = tmp_path / "module.py"
    source.write_text("from cvaezoo import cli\nimport cvaezoo.runs\nfrom cvaezoo.models.bound import X\n"
                      "def later():\n    from cvaezoo.data import idx\n")
    assert cvaezoo_imports(source) == {"cli", "runs", "models.bound", "data", "data.idx"}  # a package runs its __init__


def test_every_module_has_a_layer():
    assert [module for module in import_graph() if layer_of(module) is None] == []


def test_imports_point_down_only():
    upward = [(module, imported) for module, imports in import_graph().items() for imported in imports
              if layer_of(imported) > layer_of(module)]
    assert upward == []


def test_the_library_never_imports_an_entry_point():
    entry = len(LAYERS) - 1
    graph = import_graph()
    assert [(m, i) for m, imports in graph.items() if layer_of(m) != entry for i in imports if layer_of(i) == entry] == []
    # and entry points do not import each other: the shared pieces live in the run library
    assert [(m, i) for m, imports in graph.items() if layer_of(m) == entry for i in imports if layer_of(i) == entry] == []


if __name__ == "__main__":
    graph = import_graph()
    for depth, (title, _) in enumerate(LAYERS):
        print(f"{depth} {title}")
        for module in sorted(m for m in graph if layer_of(m) == depth):
            print(f"    {module:<18} <- {', '.join(sorted(graph[module])) or '-'}")
