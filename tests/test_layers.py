"""The package's import layers: arrows point down only, and the library never imports an entry point.

    python tests/test_layers.py      # prints each module's layer and what it imports from cvaezoo
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cvaezoo"
# lowest first; a module may import from its own layer and the ones below it
LAYERS: list[tuple[str, set[str]]] = [
    ("basics", {"errors", "arguments", "checkpoint_files", "attributes", "viz"}),
    ("distributions and nets", {"distributions", "nets"}),
    ("data", {"data", "data.base", "data.download", "data.images", "data.folder", "data.cifar", "data.attributes", "data.shapes", "data.celeba", "data.embedded", "data.idx",
              "data.quadrants", "data.ood"}),
    ("models", {"models", "models.base", "models.cvae1", "models.cvae2", "models.cvae3", "models.cvae4", "models.m2",
                "models.vae", "models.baseline", "models.reference"}),
    ("using models", {"checkpoints", "inference", "robustness", "loggers", "callbacks", "collect"}),
    ("figures", {"figures"}),
    ("run library", {"config_types", "runs"}),
    ("entry points", {"train", "cli", "reference"}),
]
LAYER_OF = {module: depth for depth, (_, modules) in enumerate(LAYERS) for module in modules}


def cvaezoo_imports(path: Path) -> set[str]:
    """The cvaezoo modules a file imports, anywhere in it (lazy imports count), without the package prefix."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cvaezoo"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # from cvaezoo.models import base
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("cvaezoo"))
    return {name.removeprefix("cvaezoo.") for name in found if name.removeprefix("cvaezoo.") in LAYER_OF}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): cvaezoo_imports(p) for p in sorted(PACKAGE.rglob("*.py")) if module_name(p) != ""}


def test_every_module_has_a_layer():
    assert set(import_graph()) <= set(LAYER_OF), sorted(set(import_graph()) - set(LAYER_OF))


def test_imports_point_down_only():
    upward = [(module, imported) for module, imports in import_graph().items() for imported in imports
              if LAYER_OF[imported] > LAYER_OF[module]]
    assert upward == []


def test_the_library_never_imports_an_entry_point():
    entry_points = LAYERS[-1][1]
    assert [(m, i) for m, imports in import_graph().items() if m not in entry_points for i in imports & entry_points] == []
    # and entry points do not import each other: the shared pieces live in the run library
    assert [(m, i) for m, imports in import_graph().items() if m in entry_points for i in imports & entry_points] == []


if __name__ == "__main__":
    graph = import_graph()
    for depth, (title, _) in enumerate(LAYERS):
        print(f"{depth} {title}")
        for module in sorted(m for m in graph if LAYER_OF.get(m) == depth):
            print(f"    {module:<18} <- {', '.join(sorted(graph[module])) or '-'}")
