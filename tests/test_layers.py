"""The package's layers: each module imports only its own layer and the layers below it
(every import, including the ones deferred inside functions), so the folders show the flow
from a question to an answer. The order is the table in docs/README.md ("The code")."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "planner"
# bottom -> top; a module may import its own layer and any layer before it
LAYERS = [
    {"errors", "units", "vocab", "fileio"},
    {"specs", "results", "results_serving"},
    {"estimators", "catalog"},
    {"planning"},
    {"measurement"},
    {"profiling"},
    {"checks"},
    {"report"},
    {"api"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("planner"):
            if node.module == "planner":  # `from planner import __version__` (or a subpackage)
                for alias in node.names:
                    if alias.name != "__version__":
                        yield f"planner.{alias.name}", node.lineno
            else:
                yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("planner."):
                    yield alias.name, node.lineno


def _violations():
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        src = _layer(".".join(rel.parts))
        if src == "__init__":  # planner/__init__.py re-exports the API lazily
            continue
        for target, line in _imports(path):
            dst = _layer(target)
            if dst != "__init__" and RANK[dst] > RANK[src]:
                out.append(f"{rel}.py:{line} ({src}) imports {target} ({dst})")
    return out


def test_every_top_level_module_has_a_layer():
    names = {p.stem for p in PKG.glob("*.py")} | {p.name for p in PKG.iterdir() if p.is_dir()
                                                 and (p / "__init__.py").exists()}
    assert names - {"__init__", "data"} <= set(RANK), names - set(RANK)


def test_no_module_imports_a_layer_above_its_own():
    assert _violations() == []
