"""The package's layers (README, module map): no import cycle, and no module importing a
layer above its own. Walks every import statement with ast, so function-level imports count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "teamindex"

# Top to bottom; a module may import its own layer and those below it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"__main__", "cli"}),
    frozenset({"app", "boot", "handlers"}),
    frozenset({"api", "web"}),
    frozenset({"ops"}),
    frozenset({"index", "access", "context", "upstream"}),
    frozenset({"db"}),
    frozenset(
        {"__init__", "config", "models", "clock", "errors", "migrations", "headers", "loading"}
    ),
)


def _module_name(path: Path) -> str:
    parts = ["teamindex", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node but those under `if TYPE_CHECKING:` (annotations only: no dependency at
    run time, so a lower layer may name a higher layer's type there)."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) == "TYPE_CHECKING":
                pending.extend(child.orelse)
                continue
            pending.append(child)
    return nodes


def _imports(path: Path, module: str) -> set[str]:
    """The teamindex modules `path` imports (a `from pkg import name` counts pkg.name when
    that is a module)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {
        module: {name for name in _imports(path, module) if name in paths and name != module}
        for module, path in paths.items()
    }


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for depth, names in enumerate(LAYERS):
        if top in names:
            return depth
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def test_every_module_has_a_layer() -> None:
    for module in _graph():
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in _graph().items()
        for target in targets
        if layer_of(target) < layer_of(module)
    )
    assert upward == []


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package's __init__ importing its own submodules is no cycle worth refusing only
    # when the submodules do not import it back; all others are reported.
    assert cycles == []


@pytest.mark.parametrize(
    ("module", "imported", "upward"),
    [
        ("teamindex.index.storage", "teamindex.api.files", True),
        ("teamindex.api.files", "teamindex.index.storage", False),
        ("teamindex.db.core", "teamindex.config", False),
        ("teamindex.config", "teamindex.db", True),
    ],
)
def test_layer_order(module: str, imported: str, upward: bool) -> None:
    assert (layer_of(imported) < layer_of(module)) is upward
