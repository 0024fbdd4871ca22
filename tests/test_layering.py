"""The layering of docs/architecture.md, kept by a test: every import points down.

    edges     admin, apis, views, urls, commands, tasks of every app; monitoring, planning,
              dynconfig_site: they may use everything below, and nothing below uses them
    config | webhooks   the environment YAML, sync and export: writes values and sources;
              receivers of the change events (values.events) and their deliveries
    values    value types, overrides, the engine: calls sources
    sources | access    sources (adapters, breakers, calls, health); API tokens: independent
    audit     the audit log and the configuration version every process watches
    core      plain shared pieces: durations, errors, answers, validation, blending, metrics

A module of a layer imports only its own layer's package or layers below it (never a sibling
of its layer), and no import hides inside a function (Django's AppConfig.ready and the few
places named in ALLOWED_INNER_IMPORTS excepted, each with its reason). The check reads the
source (ast): it sees every import, also the ones that would run only on some path.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.processes import PROJECT_ROOT

# Bottom to top; the packages of one layer must not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("audit",),
    ("sources", "access"),
    ("values",),
    ("config", "webhooks"),
)
EDGE_PACKAGES = frozenset({"monitoring", "planning", "dynconfig_site"})
# Modules (or packages) of an app that are its edges: entry points that users and Django reach.
EDGE_MODULE_NAMES = frozenset({"admin", "apis", "api_serializers", "views", "urls", "management", "tasks", "simulators"})
# Not layered: outside the platform's packages.
SKIPPED_TOP_LEVEL = frozenset({"tests", "bench", "client", "deploy", ".venv", "var", "node_modules"})

# module: why its import inside a function is not hiding a cycle.
ALLOWED_INNER_IMPORTS = {
    # Django imports an app's package while it loads apps, before any model may be imported.
    "values": "values.get_value is imported on first use: `values` is loaded before its models",
    "manage": "Django's own manage.py",
    "deploy.gunicorn.conf": "gunicorn's hooks run in its master, before Django is set up",
}


def layer_of(module: str) -> int | None:
    """The layer index of a module (len(LAYERS) for edges), or None if it is not layered."""
    parts = module.split(".")
    if parts[0] in EDGE_PACKAGES or any(part in EDGE_MODULE_NAMES for part in parts[1:]):
        return len(LAYERS)
    for index, packages in enumerate(LAYERS):
        if parts[0] in packages:
            return index
    return None


def platform_modules(root: Path) -> dict[str, Path]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in SKIPPED_TOP_LEVEL or "migrations" in relative.parts:
            continue
        name = ".".join(relative.with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, is inside a function) for each import of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def layering_violations(root: Path) -> list[str]:
    """Every import that points up or sideways, and every import hidden in a function."""
    problems = []
    for module, path in platform_modules(root).items():
        layer = layer_of(module)
        where = path.relative_to(root)
        for imported, line, in_function in imports_of(path):
            imported_layer = layer_of(imported)
            if in_function and imported_layer is not None and not _is_allowed_inner(module, path):
                problems.append(f"{where}:{line}: imports {imported} inside a function")
            if layer is None or imported_layer is None:
                continue
            same_package = imported.split(".")[0] == module.split(".")[0]
            if imported_layer > layer:
                problems.append(f"{where}:{line}: {module} imports {imported}, a layer above it")
            elif imported_layer == layer < len(LAYERS) and not same_package:
                problems.append(f"{where}:{line}: {module} imports {imported}, a sibling of its layer")
    return problems


def _is_allowed_inner(module: str, path: Path) -> bool:
    if module in ALLOWED_INNER_IMPORTS:
        return True
    return path.name == "apps.py"  # AppConfig.ready: where Django wants checks and signals registered


def test_layering__the_platform__every_import_points_down():
    assert layering_violations(PROJECT_ROOT) == []


def test_layering__an_upward_import__reported(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "durations.py").write_text("from values.models import ValueType\n")
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "models.py").write_text("from core.durations import parse_duration\n")

    assert layering_violations(tmp_path) == [
        "core/durations.py:1: core.durations imports values.models, a layer above it"
    ]


def test_layering__a_sibling_or_an_edge_import__reported(tmp_path):
    (tmp_path / "sources").mkdir()
    (tmp_path / "sources" / "calls.py").write_text("import access.models\nfrom values import apis\n")
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "engine.py").write_text("from values.apis import reader\n")

    assert layering_violations(tmp_path) == [
        "sources/calls.py:1: sources.calls imports access.models, a sibling of its layer",
        "sources/calls.py:2: sources.calls imports values, a layer above it",
        "values/engine.py:1: values.engine imports values.apis, a layer above it",
    ]


def test_layering__an_import_inside_a_function__reported(tmp_path):
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "engine.py").write_text("def read():\n    from sources.calls import call_source\n")

    assert layering_violations(tmp_path) == ["values/engine.py:2: imports sources.calls inside a function"]


def test_layering__an_edge_importing_everything__allowed(tmp_path):
    (tmp_path / "values").mkdir()
    (tmp_path / "values" / "apis.py").write_text("from config.environment import load\nfrom monitoring import views\n")

    assert layering_violations(tmp_path) == []
