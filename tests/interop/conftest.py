"""Fixtures for the interop tests: real skopeo, podman and umoci, with private configuration
and storage in each test's temporary folder. The `server` fixture (a live `ocinest serve`)
comes from tests/conftest.py."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_helpers import Podman, Skopeo, require, write_container_configs


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    require("skopeo")
    conf = tmp_path / "containers"
    env = write_container_configs(conf)
    return Skopeo(env, conf / "policy.json", Path(env["TMPDIR"]))


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    require("podman")
    conf = tmp_path / "containers"
    env = write_container_configs(conf)
    base = tmp_path / "podman"
    (base / "root").mkdir(parents=True)
    # A folder of our own in /tmp, for what needs a short or plain path (the test's folder
    # has neither under every --basetemp): podman's run folder, whose path may not exceed
    # 50 characters, and the OCI layouts that `podman pull oci:PATH` reads, since podman
    # names the image localhost/PATH, which must be a valid lowercase reference.
    run_base = Path("/tmp") / f"ocinest-pm-{secrets.token_hex(4)}"
    run_base.mkdir()
    try:
        for sub in ("runroot", "tmpdir", "layouts"):
            (run_base / sub).mkdir()
        p = Podman(env, conf / "policy.json", base, run_base)
        yield p
        # Remove the images, so that nothing of this test stays in podman's store.
        p("rmi", "--all", "--force", check=False)
    finally:
        shutil.rmtree(run_base, ignore_errors=True)
