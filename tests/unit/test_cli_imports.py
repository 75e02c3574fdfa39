"""The command line imports only what the command it runs needs: `ocinest --version` neither
the registry nor the client, a client command not the registry, `serve` not the client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("ocinest.registry", "ocinest.client", "aiohttp", "httpx", "boto3", "psycopg")


def imported(*args: str) -> set[str]:
    """The heavy modules loaded by `ocinest ARGS`, run in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from ocinest.cli.main import main\n"
        "try:\n"
        f"    main({list(args)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps(sorted({{m.split('.')[0] if not m.startswith('ocinest') else "
        f"'.'.join(m.split('.')[:2]) for m in sys.modules if m.startswith({HEAVY!r})}})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_version_imports_neither_registry_nor_client() -> None:
    assert imported("--version") == set()


@pytest.mark.parametrize("command", [["copy", "--help"], ["sign", "--help"], ["tree", "--help"]])
def test_a_client_command_does_not_import_the_registry(command: list[str]) -> None:
    loaded = imported(*command)
    assert "ocinest.client" in loaded
    assert "ocinest.registry" not in loaded


def test_serve_does_not_import_the_client() -> None:
    loaded = imported("serve", "--help")
    assert "ocinest.registry" in loaded
    assert "ocinest.client" not in loaded
