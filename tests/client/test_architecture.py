"""The client builds on the pure OCI model only: never on the registry or its storage."""

from __future__ import annotations

import ast
from pathlib import Path

import ocinest.client

FORBIDDEN = ("ocinest.registry", "ocinest.storage")


def test_client_imports_neither_registry_nor_storage() -> None:
    folder = Path(ocinest.client.__file__).parent
    files = sorted(folder.rglob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
