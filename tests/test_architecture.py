"""Dependencies point one way: entry points (routes, the API, the console, the CLI, jobs/) →
domain packages → models and infrastructure. Walks every module's imports, function-level ones
included, so a cycle cannot hide inside a function (docs/architecture.md)."""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY_PACKAGES = ("portal.api", "portal.admin", "portal.cli", "jobs")
# Function-level imports of project modules that are allowed, each for a reason of the framework's.
ALLOWED_INNER = {
    # The app factory: the blueprints and the API import the app's services; importing them at
    # the top of portal/__init__ would run all of that for any `import portal.x`.
    "portal",
}


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("portal", "jobs"):
        for path in (ROOT / top).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, int, str]]]:
    graph: dict[str, set[str]] = defaultdict(set)
    inner = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
        in_function = {id(n) for fn in functions for n in ast.walk(fn)}
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                # `from portal import audit` depends on portal.audit, not on the package portal.
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
            for name in names:
                target = _resolve(name)
                if target and target != module:
                    graph[module].add(target)
                    if id(node) in in_function:
                        inner.append((module, node.lineno, target))
    return graph, inner


GRAPH, INNER = _imports()


def _is_entry(module: str) -> bool:
    return module.rpartition(".")[2] == "routes" or any(
        module == p or module.startswith(p + ".") for p in ENTRY_PACKAGES
    )


def test_no_import_cycle_between_modules():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    assert cycles == []


def test_domain_code_never_imports_an_entry_point():
    upward = sorted(
        (module, target)
        for module, targets in GRAPH.items()
        if not _is_entry(module) and module != "portal"
        for target in targets
        if _is_entry(target)
    )
    assert upward == []


def test_function_level_imports_of_project_modules_only_where_the_framework_needs_one():
    assert [(m, line, t) for m, line, t in INNER if m not in ALLOWED_INNER] == []


# The bottom layer: models and infrastructure may import each other and third parties, never a domain.
LOWER_LAYER = ("portal.models", "portal.infra", "portal.extensions", "portal.errors")


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_models_and_infrastructure_never_import_a_domain_package():
    upward = sorted(
        (module, target)
        for module, targets in GRAPH.items()
        if _in(module, LOWER_LAYER)
        for target in targets
        if not _in(target, LOWER_LAYER)
    )
    assert upward == []
