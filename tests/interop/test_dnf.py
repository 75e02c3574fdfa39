"""A stock dnf (Debian's) installs from an RPM repository pushed with `ocinest rpm push`:
through the files view, signed packages checked (gpgcheck=1), with Basic auth on; and from a
folder `ocinest rpm pull` wrote from a registry without the extension."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from interop_helpers import require
from tests.authkit import write_htpasswd
from tests.client import conftest as client_fixtures
from tests.client.conftest import Cli, Distribution
from tests.conftest import Server, free_port
from tests.rpmkit import Signer, build_rpm

USERS = {"alice": "wonderland"}

# The client suite's fixtures: `ocinest` as a process with a private HOME, and Debian's
# docker-registry (a registry without the extension).
cli = client_fixtures.cli
distribution = client_fixtures.distribution
private_credentials = client_fixtures.private_credentials


def dnf(
    tmp: Path, name: str, baseurl: str, key: Path | None, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`dnf install hello` into a fresh root from `baseurl`, signatures checked against
    `key` (gpgcheck=1)."""
    base = tmp / name
    repos = base / "repos"
    repos.mkdir(parents=True)
    (repos / f"{name}.repo").write_text(
        f"[{name}]\nname={name}\nbaseurl={baseurl}\ngpgcheck=1\nrepo_gpgcheck=0\n"
        f"gpgkey=file://{key}\n" + "".join(f"{line}\n" for line in extra)
    )
    return subprocess.run(
        [
            require("dnf"),
            "-y",
            f"--installroot={base / 'root'}",
            f"--setopt=reposdir={repos}",
            f"--setopt=cachedir={base / 'cache'}",
            "--setopt=install_weak_deps=False",
            "--releasever=1",
            "install",
            "hello",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def dnf_install(tmp: Path, name: str, baseurl: str, key: Path, *extra: str) -> str:
    """`dnf install hello` that succeeds; the version installed."""
    done = dnf(tmp, name, baseurl, key, *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Complete!" in done.stdout
    return (tmp / name / "root" / "usr/share/hello/hello.txt").read_text().strip()


@pytest.fixture
def signing() -> Iterator[Callable[[Path], Signer]]:
    """Make a Signer (exporting its public key to the folder given); its agent is stopped
    after the test."""
    made: list[Signer] = []

    def make(out: Path) -> Signer:
        made.append(Signer(out))
        return made[-1]

    yield make
    for signer in made:
        signer.close()


def test_dnf_installs_from_the_files_view_with_auth(
    cli: Cli, tmp_path: Path, signing: Callable[[Path], Signer]
) -> None:
    server = Server(
        tmp_path / "data",
        free_port(),
        ["--htpasswd", str(write_htpasswd(tmp_path / "htpasswd", USERS))],
    )
    server.start()
    try:
        cli("login", server.host, "-u", "alice", "--password-stdin", stdin="wonderland\n")
        signer = signing(tmp_path / "gnupg")
        old = [
            build_rpm(tmp_path / "v1", "hello", "1.0"),
            build_rpm(tmp_path / "v1", "hello-doc", "1.0"),
        ]
        signer.sign(*old)
        push = ["rpm", "push", "--plain-http", "--json", f"{server.host}/myrpmrepo"]
        first = json.loads(cli(*push, *map(str, old)).stdout)
        newer = build_rpm(tmp_path / "v2", "hello", "2.0")
        signer.sign(newer)
        second = json.loads(cli(*push, str(newer), "--from", first["reference"]).stdout)
        assert second["digest"] != first["digest"]

        files = f"http://{server.host}/_ocinest/files/myrpmrepo"
        auth = ("username=alice", "password=wonderland")
        key = signer.public_key
        assert dnf_install(tmp_path, "old", f"{files}@{first['digest']}/", key, *auth) == "1.0-1"
        assert dnf_install(tmp_path, "new", f"{files}@{second['digest']}/", key, *auth) == "2.0-1"
        assert dnf_install(tmp_path, "tag", f"{files}:latest/", key, *auth) == "2.0-1"

        # Without credentials dnf is refused: the files view is authorized like the API.
        refused = dnf(tmp_path, "anon", f"{files}@{first['digest']}/", key)
        assert refused.returncode != 0
        assert "401" in refused.stdout + refused.stderr
    finally:
        server.stop()


def test_dnf_installs_what_rpm_pull_wrote_from_distribution(
    cli: Cli, distribution: Distribution, tmp_path: Path, signing: Callable[[Path], Signer]
) -> None:
    signer = signing(tmp_path / "gnupg")
    rpm = build_rpm(tmp_path / "rpms", "hello", "1.0")
    signer.sign(rpm)
    pushed = json.loads(
        cli(
            "rpm", "push", "--plain-http", "--json", f"{distribution.host}/rpms/repo", str(rpm)
        ).stdout
    )
    assert pushed["mode"] == "compat"
    out = tmp_path / "folder"
    cli("rpm", "pull", "--plain-http", pushed["reference"], str(out))
    assert dnf_install(tmp_path, "pulled", f"file://{out}", signer.public_key) == "1.0-1"

    # gpgcheck=1 is at work: an unsigned package from the same kind of folder is refused.
    unsigned = build_rpm(tmp_path / "unsigned", "hello", "3.0")
    ref = json.loads(
        cli(
            "rpm", "push", "--plain-http", "--json", f"{distribution.host}/rpms/u", str(unsigned)
        ).stdout
    )["reference"]
    cli("rpm", "pull", "--plain-http", ref, str(tmp_path / "u"))
    refused = dnf(tmp_path, "unsigned", f"file://{tmp_path / 'u'}", signer.public_key)
    assert refused.returncode != 0
    assert "hello-3.0-1.noarch.rpm is not signed" in refused.stdout + refused.stderr
