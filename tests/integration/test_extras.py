"""The scale-out stores' libraries are extras: ocinest[s3] (boto3) and ocinest[postgres]
(psycopg). Without them the embedded stores serve, and a configuration that needs one fails
at start, naming the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

# Run as `python -c`: make the extras' libraries unimportable, then run the command line.
BLOCKED = ("boto3", "botocore", "psycopg", "psycopg_pool")
PROGRAM = (
    "import sys\n"
    f"for name in {BLOCKED!r}:\n"
    "    sys.modules[name] = None  # import raises ImportError\n"
    "from ocinest.cli.main import main\n"
    "main()\n"
)


def ocinest(tmp_path: Path, settings: dict[str, object], *args: str) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data": str(tmp_path / "data"), **settings}))
    return [sys.executable, "-c", PROGRAM, *args, "--config", str(config)]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"storage": "s3", "s3_bucket": "b"}, "storage: s3 needs the s3 extra"),
        (
            {"metadata": "postgres", "postgres_dsn": "postgresql://127.0.0.1:1/x"},
            "metadata: postgres needs the postgres extra",
        ),
        (
            {"metadata": "postgres", "postgres_dsn": "postgresql://127.0.0.1:1/x", "workers": 2},
            "metadata: postgres needs the postgres extra",
        ),
    ],
)
def test_serve_without_the_extra_fails_at_start_naming_it(
    tmp_path: Path, settings: dict[str, object], message: str
) -> None:
    extra = message.split(" extra")[0].rsplit(" ", 1)[1]
    addr = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        ocinest(tmp_path, settings, "serve", "--addr", addr),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert message in done.stderr
    assert f"pip install 'ocinest[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_on_the_embedded_stores_needs_no_extra(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        ocinest(tmp_path, {}, "serve", "--addr", url.removeprefix("http://")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                r = httpx.get(url + "/v2/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.05)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0


@pytest.mark.parametrize("command", ["gc", "fsck"])
def test_operator_commands_without_the_extra_name_it(tmp_path: Path, command: str) -> None:
    settings = {"metadata": "postgres", "postgres_dsn": "postgresql://127.0.0.1:1/x"}
    done = subprocess.run(
        ocinest(tmp_path, settings, command), capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    assert "metadata: postgres needs the postgres extra" in done.stderr
    assert "pip install 'ocinest[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr
