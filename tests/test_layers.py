"""The layers of docs/architecture.md, enforced: every import of a `bench` module points down
(or within its own layer, without a cycle), and an import placed inside a function is there
only to defer a heavy library, which the imported module really loads and the line names.

Read with `ast` from the source, so it holds for every import, run or not: top-level ones,
those inside functions and those under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"

#: Bottom to top; a module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "leaves",
        (
            "bench.errors",
            "bench.limits",
            "bench.arguments",
            "bench.textfile",
            "bench.yamlfile",
            "bench.config_base",
            "bench.config_fields",
            "bench.offload",
            "bench.library_output",
            "bench.sizing.units",
        ),
    ),
    (
        "engines",
        (
            "bench.gguf",
            "bench.blocks",
            "bench.sizing.components",
            "bench.sizing.terms",
            "bench.models.synthetic",
            "bench.models.tokenizers",
            "bench.models.loading",
        ),
    ),
    ("families", ("bench.families",)),
    ("backends", ("bench.backends", "bench.speedups")),
    (
        "composition",
        (
            "bench.config",
            "bench.cells",
            "bench.environment",
            "bench.models.variants",
            "bench.sizing.sources",
            "bench.sizing.predict",
            "bench.run_schema",
            "bench.results",
            "bench.cell_summary",
            "bench.run_tables",
        ),
    ),
    (
        "stages",
        (
            "bench.runner",
            "bench.scoring",
            "bench.metrics",
            "bench.reporting",
            "bench.comparison",
            "bench.sizing",
        ),
    ),
    ("api", ("bench.api", "bench")),
    ("cli", ("bench.cli", "bench.__main__")),
)
#: Libraries slow enough to import that a function may defer them (and the bench modules
#: that load them at module level).
HEAVY = frozenset(
    {
        "torch",
        "diffusers",
        "transformers",
        "accelerate",
        "ray",
        "pandas",
        "scipy",
        "matplotlib",
        "torchmetrics",
        "torchao",
        "bitsandbytes",
        "optimum",
        "PIL",
        "huggingface_hub",
        "safetensors",
    }
)


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the bench module imported
    line: int
    text: str
    deferred: bool  # inside a function
    type_only: bool  # under `if TYPE_CHECKING:`: never executed


def module_name(path: Path) -> str:
    parts = list(path.relative_to(BENCH.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in BENCH.rglob("*.py")}


def layer_of(module: str) -> int:
    best, layer = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, layer = len(prefix), index
    assert layer >= 0, f"{module} is in no layer: add it to LAYERS and docs/architecture.md"
    return layer


def _known(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    in_function = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for sub in ast.walk(node)
    }
    type_only = {
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for sub in ast.walk(node)
    }
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets = {_known(t) for t in _targets(node, package) if t.startswith("bench")}
        for target in sorted(t for t in targets if t and t != module):
            # `from . import x` in a package names the package itself too: not an edge
            if target == package and target != _known(getattr(node, "module", None) or ""):
                continue
            end = node.end_lineno or node.lineno
            text = " ".join(lines[node.lineno - 1 : end])
            deferred, typing = id(node) in in_function, id(node) in type_only
            out.append(Import(module, target, node.lineno, text, deferred, typing))
    return out


ALL = [imp for module in sorted(MODULES) for imp in imports_of(module)]


def _external_top_level(module: str) -> set[str]:
    """Top-level libraries a module imports, and those it names in a module-level
    `IMPORTED_AT_LOAD` tuple: what it imports by name while it loads (the runner's warm server
    imports the cells' libraries that way, under settings of its own)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "IMPORTED_AT_LOAD" for t in node.targets
        ):
            names |= {str(v).split(".")[0] for v in ast.literal_eval(node.value)}
    return names


TOP_LEVEL: dict[str, set[str]] = {}
for _imp in ALL:
    if not _imp.deferred and not _imp.type_only:
        TOP_LEVEL.setdefault(_imp.source, set()).add(_imp.target)


@functools.cache
def loads_heavy(module: str) -> frozenset[str]:
    """Heavy libraries importing `module` loads: its own top-level imports and those of every
    bench module it reaches through top-level imports."""
    top_level = TOP_LEVEL
    seen, todo = {module}, [module]
    while todo:
        for target in top_level.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return frozenset().union(*(_external_top_level(m) & HEAVY for m in seen))


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


def test_no_import_points_up_a_layer() -> None:
    up = [
        f"{i.source} ({LAYERS[layer_of(i.source)][0]}) imports {i.target} "
        f"({LAYERS[layer_of(i.target)][0]}) at line {i.line}"
        for i in ALL
        if layer_of(i.target) > layer_of(i.source)
        and not i.source.startswith(i.target + ".")  # a module's own package __init__
    ]
    assert up == [], "\n".join(up)


def test_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in ALL:
        if not imp.source.startswith(imp.target + "."):
            edges[imp.source].add(imp.target)
    cycles = _strongly_connected(edges)
    assert cycles == [], "\n".join(" <-> ".join(sorted(c)) for c in cycles)


def test_an_import_inside_a_function_only_defers_a_heavy_library() -> None:
    """Allowed only where the imported module loads a heavy library at import time and the
    line says which (a comment naming it); anything else belongs at the top of the file."""
    wrong = []
    for imp in ALL:
        if not imp.deferred:
            continue
        heavy = loads_heavy(imp.target)
        comment = imp.text.partition("#")[2]
        if not heavy or not any(name in comment for name in heavy):
            wrong.append(
                f"{imp.source}:{imp.line} imports {imp.target} in a function "
                f"(it loads {', '.join(sorted(heavy)) or 'no heavy library'}): {imp.text.strip()}"
            )
    assert wrong == [], f"{len(wrong)} in-function imports:\n" + "\n".join(wrong)


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; components of more than one module are cycles."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(component)

    for node in edges:
        if node not in index:
            visit(node)
    return out


def _defined_in(tree: ast.Module) -> set[str]:
    """The names a module defines itself (not those it imports)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_a_package_hands_out_only_what_it_defines() -> None:
    """One import path per name: `from bench.<package> import x` names a submodule or something
    the package's __init__ defines (a registry, a look-up), never a name it imported from one of
    its modules. `bench` itself is the exception: its __init__ is the public API's list."""
    packages = {
        module: _defined_in(ast.parse(path.read_text(encoding="utf-8")))
        for module, path in MODULES.items()
        if path.name == "__init__.py" and module != "bench"
    }
    root = BENCH.parent
    offenders = []
    for path in sorted(
        [*root.glob("bench/**/*.py"), *root.glob("tests/**/*.py"), *root.glob("benchmarks/*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or node.module not in packages:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule not in MODULES and alias.name not in packages[node.module]:
                    where = f"{path.relative_to(root)}:{node.lineno}"
                    offenders.append(f"{where}: {alias.name} from {node.module}")
    assert not offenders, "names taken from a package that only re-exports them:\n" + "\n".join(
        offenders
    )
