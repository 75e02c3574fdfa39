"""The client builds on the pure OCI model only: never on the registry or its storage. The
copier is written once against the `Repository` protocol, the nested wire contract is defined
once (in `ocinest.oci.nested`), and no module grows past a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import ocinest
import ocinest.client

FORBIDDEN = ("ocinest.registry", "ocinest.storage")
SRC = Path(ocinest.__file__).parent
CONTRACT = SRC / "oci" / "nested.py"
# The wire contract's literals: annotation keys, the discovery header, the tree path.
LITERALS = ("dev.ocinest.repository", "dev.ocinest.subject", "Ocinest-Nested", "_ocinest/tree")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(0, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append((node.level, node.module))
    return names


def test_client_imports_neither_registry_nor_storage() -> None:
    folder = Path(ocinest.client.__file__).parent
    files = sorted(folder.rglob("*.py"))
    assert files
    for path in files:
        for level, name in _imports(ast.parse(path.read_text())):
            assert level or not name.startswith(FORBIDDEN), f"{path.name} imports {name}"


def test_the_copier_knows_only_the_repository_protocol() -> None:
    for name in ("copy.py", "ops.py"):
        tree = ast.parse((SRC / "client" / name).read_text())
        if name == "copy.py":
            modules = {module for _, module in _imports(tree)}
            assert not modules & {"remote", "layout", "transport", "transfers"}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                checked = ast.unparse(node.args[1])
                assert "Repository" not in checked, f"{name}: isinstance(…, {checked})"


def test_the_nested_contract_is_defined_once() -> None:
    for path in sorted(SRC.rglob("*.py")):
        if path == CONTRACT:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)
        }  # docstrings and comments may name them
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                for literal in LITERALS:
                    assert literal not in node.value, f"{path.relative_to(SRC)}: {literal!r}"


def test_no_client_module_is_too_long() -> None:
    for folder in ("client", "cli", "oci"):
        for path in sorted((SRC / folder).glob("*.py")):
            lines = len(path.read_text().splitlines())
            assert lines <= 500, f"{folder}/{path.name} has {lines} lines"
