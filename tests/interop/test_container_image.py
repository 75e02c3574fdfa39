"""The container image that container/build.sh makes (a Debian 12 root with ocinest in a venv,
committed by buildah from scratch), checked as an operator's runtime would see it, without
running it under podman (which cannot run containers on these machines): its configuration
through skopeo, then its root unpacked by umoci and its entrypoint run there with chroot, as
the image's user, on the stores of the configuration under test; skopeo pushes an image to
it and pulls it back. The image is built once per pytest run, by whichever worker comes
first; nothing is kept for the next run."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from interop_helpers import (
    Layout,
    Skopeo,
    assert_same_image,
    registry_ref,
    require,
    run,
    umoci_image,
)
from tests.conftest import backend_settings, free_port

ROOT = Path(__file__).resolve().parents[2]
USER = "10001:10001"
DATA = "/var/lib/ocinest"
ENTRYPOINT = ["/opt/ocinest/bin/ocinest", "serve", "--addr", "0.0.0.0:5000", "--data", DATA]
TAG = "test"
BUILD_TIMEOUT = 900  # minutes of mmdebstrap and pip on a busy 2-core machine
# The first test's setup includes the build. Both tests run on one pytest-xdist worker, so
# that the other never waits out the build on its lock.
pytestmark = [pytest.mark.timeout(BUILD_TIMEOUT + 300), pytest.mark.xdist_group("container-image")]


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    """The image as an OCI layout, tagged TAG."""
    for tool in ("mmdebstrap", "buildah", "umoci", "skopeo", "chroot"):
        require(tool)
    assert os.geteuid() == 0, "building and chrooting need root (bash .ci/run runs as root)"
    # With pytest-xdist, the workers' temporary folders share the run's: build there, once.
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    layout = shared / "ocinest-image"
    with open(shared / "ocinest-image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "ocinest-image.built").exists():
            build = ["bash", ROOT / "container/build.sh", f"oci:{layout}:{TAG}"]
            run(build, timeout=BUILD_TIMEOUT)
            (shared / "ocinest-image.built").touch()
    return Layout(layout)


def image_config(skopeo: Skopeo, image: Layout) -> dict[str, Any]:
    out = skopeo("inspect", "--config", f"oci:{image.path}:{TAG}").stdout
    doc: dict[str, Any] = json.loads(out)
    return doc


def test_image_configuration(skopeo: Skopeo, image: Layout) -> None:
    doc = image_config(skopeo, image)
    config = doc["config"]
    assert config["User"] == USER
    assert config["Entrypoint"] == ENTRYPOINT
    assert not config.get("Cmd")
    assert list(config["Volumes"]) == [DATA]
    assert list(config["ExposedPorts"]) == ["5000/tcp"]
    assert config["WorkingDir"] == DATA
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "ocinest"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert (doc["os"], doc["architecture"]) == ("linux", "amd64")
    # One layer (the Debian root), made without running anything in a container.
    assert len(doc["rootfs"]["diff_ids"]) == 1
    manifest = image.json_blob(image.descriptor(TAG)["digest"])
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+gzip"
    ]


class Chrooted:
    """The image's entrypoint, run in its unpacked root as its user."""

    def __init__(
        self, rootfs: Path, settings: dict[str, object], env: dict[str, str], port: int
    ) -> None:
        self.rootfs = rootfs
        self.settings = settings
        self.url = f"http://127.0.0.1:{port}"
        self.log = rootfs.parent / "server.log"
        # Arguments after the image name are appended to the entrypoint (as `podman run
        # IMAGE --addr ...` would): the last --addr wins.
        argv = [*ENTRYPOINT, "--addr", f"127.0.0.1:{port}", "--config", "/etc/ocinest.yaml"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["chroot", f"--userspec={USER}", rootfs, *argv],
                env=env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                assert httpx.get(self.url + "/v2/", timeout=2).status_code == 200
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the image's server did not start"
                time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        return self.proc.returncode


@pytest.fixture
def chrooted(
    tmp_path: Path, skopeo: Skopeo, image: Layout, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Chrooted]:
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", f"{image.path}:{TAG}", bundle])
    rootfs = bundle / "rootfs"
    # The scale-out stores whenever the test run has them, as an operator's image would use
    # them (and so the image's s3 and postgres extras are shown at work): PostgreSQL and S3
    # are on loopback, which the chroot shares. In a file inside the root.
    if "OCINEST_TEST_POSTGRES" in os.environ:
        monkeypatch.setenv("OCINEST_TEST_METADATA", "postgres")
    if "S3_ENDPOINT" in os.environ:
        monkeypatch.setenv("OCINEST_TEST_STORAGE", "s3")
    settings = backend_settings()
    (rootfs / "etc/ocinest.yaml").write_text(json.dumps(settings))
    # The environment a runtime gives: the image's, and HOME from its /etc/passwd; plus the
    # S3 credentials, when on S3.
    env = {"HOME": DATA}
    env |= dict(entry.split("=", 1) for entry in image_config(skopeo, image)["config"]["Env"])
    if settings.get("storage") == "s3":
        env |= {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    server = Chrooted(rootfs, settings, env, free_port())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_image_serves_as_its_user_and_round_trips_an_image(
    tmp_path: Path, skopeo: Skopeo, chrooted: Chrooted
) -> None:
    # The server runs as the image's user, not root, and owns its data folder.
    status = Path(f"/proc/{chrooted.proc.pid}/status").read_text()
    uid = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uid == ["10001"] * 4
    data = chrooted.rootfs / DATA.lstrip("/")
    assert (data.stat().st_uid, data.stat().st_gid) == (10001, 10001)

    src = umoci_image(
        tmp_path / "src",
        "v1",
        [{"etc/hello.txt": b"hello from the ocinest image\n"}],
        workdir=tmp_path,
    )
    host = chrooted.url.removeprefix("http://")
    ref = registry_ref(host, "images/hello", "v1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src.path}:v1", ref)
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'back'}:v1")
    assert_same_image(src, "v1", Layout(tmp_path / "back"), "v1")
    tags = httpx.get(f"{chrooted.url}/v2/images/hello/tags/list", timeout=10).json()
    assert tags == {"name": "images/hello", "tags": ["v1"]}

    # What the server wrote in its volume is its user's.
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in data.rglob("*")}
    assert owners <= {(10001, 10001)}
    if chrooted.settings.get("metadata") != "postgres":
        assert (data / "meta.db").is_file()
    if chrooted.settings.get("storage") != "s3":
        assert (data / "blobs").is_dir()
    assert chrooted.stop() == 0
