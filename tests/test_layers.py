"""Imports run one way: no import cycles inside the package, and the runtime stays light.

Every ``import`` in every module counts, the ones inside functions too (a function-level import
still makes a cycle; it only hides it until the function runs); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgecomp"
# What the on-device runtime may not import: the training/export stack and the layers above it.
RUNTIME_FORBIDDEN = (
    "torch",
    "transformers",
    "peft",
    "optimum",
    "onnx",
    "bitsandbytes",
    "edgecomp.export",
    "edgecomp.compose",
    "edgecomp.train",
    "edgecomp.eval",
    "edgecomp.bench",
    "edgecomp.library",
    "edgecomp.recipes",
    "edgecomp.cli",
)


# The layers, lowest first: a module may import its own layer and those below, never one above.
LAYERS = (
    ("errors", "console", "fsutil", "hashes", "model_folder", "metrics", "logit_metrics", "finite"),
    ("models",),
    ("data",),
    ("runtime",),
    ("compose",),
    ("train", "export"),
    ("library",),
    ("options",),
    ("eval", "bench"),
    ("recipes",),
    ("cli",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def imports_of(path: Path, here: str | None = None) -> set[str]:
    """Absolute names of everything module ``here`` (at ``path``) imports (``from . import x``
    gives ``pkg`` and ``pkg.x``: x may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    here = here or module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def module_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_inside_the_package():
    found = cycles(module_graph())
    assert not found, "import cycles: " + "; ".join(" ↔ ".join(c) for c in found)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of a module's top-level part (``edgecomp.export.pipeline`` → export's)."""
    part = module.split(".")[1] if module.count(".") else None
    return next((i for i, layer in enumerate(LAYERS) if part in layer), None)


def test_imports_point_down_the_layers():
    graph = module_graph()
    unplaced = sorted({m.split(".")[1] for m in graph if m.count(".") and layer_of(m) is None})
    assert not unplaced, f"modules in no layer of LAYERS: {unplaced}"
    upward = [
        f"{a} imports {b}"
        for a, bs in sorted(graph.items())
        for b in sorted(bs)
        if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports up the layers: " + "; ".join(upward)


def test_runtime_imports_neither_export_nor_torch():
    bad = []
    for path in sorted((PACKAGE / "runtime").rglob("*.py")):
        for name in sorted(imports_of(path)):
            if any(name == f or name.startswith(f + ".") for f in RUNTIME_FORBIDDEN):
                bad.append(f"{module_name(path)} imports {name}")
    # What the runtime imports from the rest of the package must follow the same rule.
    graph = module_graph()
    reach, todo = set(), [m for m in graph if m.startswith("edgecomp.runtime")]
    while todo:
        m = todo.pop()
        if m not in reach:
            reach.add(m)
            todo += graph[m]
    for m in sorted(reach):
        if any(m == f or m.startswith(f + ".") for f in RUNTIME_FORBIDDEN):
            bad.append(f"the runtime reaches {m}")
    assert not bad, "; ".join(bad)


def test_the_checker_sees_cycles_and_function_level_imports(tmp_path):
    """The rules above can fail: a cycle is found, and so is an import inside a function body."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import onnx\n"
        "def f():\n    import torch\n    from .sibling import g\n",
        encoding="utf-8",
    )
    assert imports_of(module, "edgecomp.runtime.m") == {
        "typing",
        "typing.TYPE_CHECKING",
        "torch",
        "edgecomp.runtime.sibling",
        "edgecomp.runtime.sibling.g",
    }
