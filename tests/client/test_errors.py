"""Bad input and broken registries: each gives one line on stderr, a documented exit code, no
traceback, and never a corrupt result."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from ocinest.client import Client, LayoutRepository, NetworkError, Options, parse_reference, pull
from tests.conftest import Server, push_image
from tests.manifests import index_manifest, nested, sha256

from .conftest import Cli, Distribution
from .helpers import Tree, arun
from .servers import FaultyRegistry


def one_line_error(out: object, code: int) -> str:
    proc = out
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, proc.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("ocinest: error: ") or lines[0].startswith("Error: ")
    assert "Traceback" not in proc.stderr  # type: ignore[attr-defined]
    return str(lines[0])


@pytest.mark.parametrize(
    "ref",
    [
        "127.0.0.1:5000/UPPER/case:v1",
        "127.0.0.1:5000/repo:bad tag",
        "127.0.0.1:5000/repo@sha256:short",
        "127.0.0.1:5000/repo:-tag",
        "http://127.0.0.1:5000/repo:v1",
        "127.0.0.1:5000/",
        "127.0.0.1:5000/repo//x",
        "oci:",
    ],
)
def test_malformed_reference(cli: Cli, ref: str) -> None:
    line = one_line_error(cli("tree", ref, check=False), 2)
    assert "invalid reference" in line or "Invalid value" in line


def test_malformed_child_argument(server: Server, cli: Cli) -> None:
    line = one_line_error(cli("index", "create", f"{server.host}/p:v1", "app1", check=False), 2)
    assert "CHILD=REF" in line
    line = one_line_error(
        cli("index", "create", f"{server.host}/p:v1", f"../up={server.host}/x:v1", check=False), 2
    )
    assert "'..'" in line or "component" in line


def test_unknown_host(cli: Cli) -> None:
    line = one_line_error(cli("tree", "no-such-registry.invalid/repo:v1", check=False), 5)
    assert "no-such-registry.invalid" in line


def test_refused_connection(cli: Cli) -> None:
    from tests.conftest import free_port

    line = one_line_error(cli("tree", f"127.0.0.1:{free_port()}/repo:v1", check=False), 5)
    assert "cannot connect" in line


def test_wrong_credentials_against_basic_auth(
    basic_distribution: Distribution, cli: Cli, private_credentials: Path, tmp_path: Path
) -> None:
    host = basic_distribution.host
    f = tmp_path / "f.txt"
    f.write_text("x")
    # No credentials at all.
    line = one_line_error(cli("push", f"{host}/r/files:v1", str(f), check=False), 3)
    assert "ocinest login" in line
    # Wrong ones, from Docker's config.json.
    docker = private_credentials / ".docker"
    docker.mkdir()
    auth = base64.b64encode(b"alice:wrong").decode()
    (docker / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    line = one_line_error(cli("push", f"{host}/r/files:v1", str(f), check=False), 3)
    assert "wrong user name or password" in line
    # ocinest login refuses to save them.
    line = one_line_error(
        cli("login", host, "-u", "alice", "--password-stdin", stdin="nope\n", check=False), 3
    )
    assert "wrong user name or password" in line
    assert not (private_credentials / ".config" / "ocinest" / "auth.json").exists()


def test_missing_child_of_index_create(server: Server, cli: Cli, client: httpx.Client) -> None:
    push_image(client, "p/app1", tag="v1")
    line = one_line_error(
        cli("index", "create", f"{server.host}/p:v1", "app1=:v1", "app2=:v1", check=False), 4
    )
    assert "app2" in line and "not found" in line


def test_missing_child_in_a_layout(
    server: Server, cli: Cli, client: httpx.Client, tmp_path: Path
) -> None:
    """A layout whose index names a nested child that is not in it."""
    layout = LayoutRepository(tmp_path / "broken", create=True)
    body = index_manifest({**nested(b"x" * 100, "app1"), "digest": "sha256:" + "ab" * 32})
    arun(layout.put_manifest(body, "application/vnd.oci.image.index.v1+json", "v1", root=True))
    line = one_line_error(
        cli("copy", f"oci:{tmp_path / 'broken'}:v1", f"{server.host}/p", check=False), 4
    )
    assert "child 'app1'" in line and "missing" in line


def test_invalid_child_path_in_an_index(
    server: Server, cli: Cli, ko_tree: Tree, tmp_path: Path
) -> None:
    """An index (here in a layout) whose nested path is not a valid child path."""
    body = ko_tree.manifests["app1"][2]
    layout = LayoutRepository(tmp_path / "bad", create=True)
    bad = index_manifest(nested(body, "Bad/../Path"))
    arun(layout.put_manifest(bad, "application/vnd.oci.image.index.v1+json", "v1", root=True))
    line = one_line_error(
        cli("copy", f"oci:{tmp_path / 'bad'}:v1", f"{server.host}/p", check=False), 1
    )
    assert "Bad/../Path" in line


def test_dropped_connection_mid_blob_is_resumed(tmp_path: Path) -> None:
    with FaultyRegistry(drops=2) as reg:
        out = tmp_path / "layout"

        async def go() -> object:
            async with Client(Options(backoff=0.01)) as client:
                return await pull(client, parse_reference(f"{reg.host}/repo:v1"), out)

        result = arun(go())
        assert str(result.digest) == sha256(reg.manifest)  # type: ignore[attr-defined]
        for digest, data in reg.blobs.items():
            assert (out / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data
        ranges = [rng for method, path, rng in reg.requests if method == "GET" and rng]
        assert ranges and all(r.startswith("bytes=") for r in ranges)


def test_dropped_connection_every_time_is_a_clear_error_and_no_corrupt_result(
    tmp_path: Path, cli: Cli
) -> None:
    with FaultyRegistry(drops=-1) as reg:
        out = tmp_path / "layout"
        line = one_line_error(cli("pull", f"{reg.host}/repo:v1", "-o", str(out), check=False), 5)
        assert "connection dropped" in line and "nothing was written" in line
        layer = next(d for d, data in reg.blobs.items() if len(data) > 1024)
        assert not (out / "blobs" / "sha256" / layer.split(":")[1]).exists()
        assert not list((out / "blobs").rglob(".tmp/*"))
        index = json.loads((out / "index.json").read_text())
        assert index["manifests"] == []  # no root was recorded for an incomplete tree

        # The same through the library: a NetworkError, and the same clean folder.
        async def go() -> None:
            async with Client(Options(backoff=0.01, retries=1)) as client:
                await pull(client, parse_reference(f"{reg.host}/repo:v1"), out)

        with pytest.raises(NetworkError):
            arun(go())


def test_retries_on_503(tmp_path: Path) -> None:
    with FaultyRegistry(unavailable=3) as reg:

        async def go() -> object:
            async with Client(Options(backoff=0.01)) as client:
                return await pull(client, parse_reference(f"{reg.host}/repo:v1"), tmp_path / "l")

        result = arun(go())
        assert str(result.digest) == sha256(reg.manifest)  # type: ignore[attr-defined]
        assert [m for m, _, _ in reg.requests[:3]] == ["GET", "GET", "GET"]


def test_giving_up_after_503s(tmp_path: Path, cli: Cli) -> None:
    with FaultyRegistry(unavailable=1000) as reg:
        line = one_line_error(cli("tree", f"{reg.host}/repo:v1", check=False), 1)
        assert "UNAVAILABLE" in line


def test_endless_answers_are_cut_off_at_their_bound(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry that never stops sending: a manifest is refused past 4 MiB, a tree answer
    past its bound, and the pull then walks the tree by manifest GETs and succeeds."""
    monkeypatch.setattr("ocinest.client.remote.MAX_TREE_ANSWER", 1 << 20)
    with FaultyRegistry(endless=True) as reg:
        pulled = cli("pull", f"{reg.host}/repo:endless", "-o", str(tmp_path / "e"), check=False)
        line = one_line_error(pulled, 1)
        assert "manifest larger than 4194304 bytes" in line

        async def go() -> object:
            async with Client(Options()) as client:
                return await pull(client, parse_reference(f"{reg.host}/repo:v1"), tmp_path / "l")

        result = arun(go())
        assert str(result.digest) == sha256(reg.manifest)  # type: ignore[attr-defined]
        asked = [p for m, p, _ in reg.requests if m == "GET"]
        assert "/v2/repo/_ocinest/tree/v1" in asked and "/v2/repo/manifests/v1" in asked
