"""planning/ reads values only through the public interface: `values.get_value`."""

from __future__ import annotations

import ast
from pathlib import Path

import planning

PUBLIC_VALUES_NAMES = {"get_value"}


def values_imports() -> list[tuple[str, str]]:
    """(file, what) for each import of the `values` package or its modules under planning/."""
    found = []
    for path in sorted(Path(planning.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "values":
                    found += [(path.name, f"values.{alias.name}") for alias in node.names]
                elif node.module.startswith("values."):
                    found.append((path.name, node.module))
            elif isinstance(node, ast.Import):
                found += [(path.name, alias.name) for alias in node.names if alias.name.split(".")[0] == "values"]
    return found


def test_planning__imports_from_values__only_get_value():
    imports = values_imports()

    assert imports, "planning reads values somewhere: the check must see that import"
    assert {what for _, what in imports} == {f"values.{name}" for name in PUBLIC_VALUES_NAMES}, imports


def test_values_package__exports_get_value():
    import values

    assert callable(values.get_value)
