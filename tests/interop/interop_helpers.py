"""Helpers for the interop tests: running real client binaries, building OCI image layouts
offline with umoci, and reading layouts back to compare what a round trip produced."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.manifests import DOCKER_MANIFEST_LIST, OCI_INDEX, sha256

INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
REF_NAME = "org.opencontainers.image.ref.name"

# Each client call is bounded: a hung client fails the test instead of the whole run.
COMMAND_TIMEOUT = 180


def require(tool: str) -> str:
    """The path of `tool`; fails (never skips) when it is not installed."""
    path = shutil.which(tool)
    assert path, f"{tool} is not installed (bash .ci/run installs it)"
    return path


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a command; when `check`, a non-zero exit fails with the whole output."""
    argv = [os.fspath(a) for a in args]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed with exit {proc.returncode}: {' '.join(argv)}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def write_container_configs(folder: Path) -> dict[str, str]:
    """Private containers/image configuration (registries.conf and policy.json in `folder`),
    so that no machine-wide file changes what skopeo and podman do. Returns the environment
    that points the tools at registries.conf; pass `folder / "policy.json"` on the command
    line (skopeo --policy, podman --signature-policy)."""
    folder.mkdir(parents=True, exist_ok=True)
    registries = folder / "registries.conf"
    # Every name in the tests is fully qualified; no short-name search, no mirrors.
    registries.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    policy = folder / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    env = dict(os.environ)
    env["CONTAINERS_REGISTRIES_CONF"] = str(registries)
    # Keep the tools' big temporary files in the test's own folder.
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp)
    return env


# Clients


@dataclass
class Skopeo:
    """skopeo with a private policy.json and registries.conf."""

    env: dict[str, str] = field(repr=False)
    policy: Path
    tmp: Path

    def __call__(
        self, *args: str | os.PathLike[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            ["skopeo", "--policy", self.policy, "--tmpdir", self.tmp, *args],
            env=self.env,
            check=check,
        )


# The flags that let podman work rootful in a container-like sandbox with no systemd, no
# overlay mounts and no shared storage: its own vfs store, run and tmp folders, cgroupfs
# instead of systemd, and an events log in a file instead of journald. podman refuses a
# --runroot longer than 50 characters ("the specified runroot is longer than 50
# characters"), so `run_base` must be short (see the `podman` fixture).
def podman_global_flags(base: Path, run_base: Path) -> list[str]:
    assert len(str(run_base / "runroot")) <= 50, run_base
    return [
        "--root",
        str(base / "root"),
        "--runroot",
        str(run_base / "runroot"),
        "--tmpdir",
        str(run_base / "tmpdir"),
        "--storage-driver",
        "vfs",
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "file",
    ]


@dataclass
class Podman:
    """podman with its own storage under the test's folder."""

    env: dict[str, str] = field(repr=False)
    policy: Path
    base: Path
    run_base: Path

    def __call__(
        self, *args: str | os.PathLike[str], check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            ["podman", *podman_global_flags(self.base, self.run_base), *args],
            env=self.env,
            check=check,
        )

    @property
    def layouts(self) -> Path:
        """Where to build OCI layouts for `podman pull oci:PATH` (a plain lowercase path)."""
        return self.run_base / "layouts"

    def transfer(
        self, verb: str, *args: str | os.PathLike[str]
    ) -> subprocess.CompletedProcess[str]:
        """`podman pull|push` against the plain-HTTP test registry."""
        return self(verb, "--tls-verify=false", "--signature-policy", self.policy, *args)

    def images(self) -> list[str]:
        out = self("images", "--all", "--noheading", "--no-trunc", "--format", "{{.ID}}").stdout
        # Full image IDs (the config digests' hex), without podman's "sha256:" prefix.
        return [line.removeprefix("sha256:") for line in out.split() if line]


def new_skopeo(folder: Path) -> Skopeo:
    """skopeo with its private configuration in `folder`."""
    require("skopeo")
    conf = folder / "containers"
    env = write_container_configs(conf)
    return Skopeo(env, conf / "policy.json", Path(env["TMPDIR"]))


@contextmanager
def new_podman(folder: Path) -> Iterator[Podman]:
    """podman with its private configuration and storage in `folder`; its images are removed
    at the end."""
    require("podman")
    conf = folder / "containers"
    env = write_container_configs(conf)
    base = folder / "podman"
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


def registry_ref(host: str, repo: str, ref: str) -> str:
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"docker://{host}/{repo}{sep}{ref}"


# OCI image layouts


@dataclass(frozen=True)
class Layout:
    """An OCI image layout on disk (image-spec image-layout.md)."""

    path: Path

    def index(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.path / "index.json").read_text())
        return doc

    def descriptor(self, tag: str) -> dict[str, Any]:
        """The index.json descriptor whose ref.name is `tag`."""
        found = [
            d
            for d in self.index()["manifests"]
            if (d.get("annotations") or {}).get(REF_NAME) == tag
        ]
        assert len(found) == 1, f"{self.path}: {len(found)} entries named {tag!r}: {self.index()}"
        return found[0]

    def blob(self, digest: str) -> bytes:
        algorithm, hex_ = digest.split(":", 1)
        data = (self.path / "blobs" / algorithm / hex_).read_bytes()
        assert sha256(data) == digest, f"{self.path}: blob {digest} does not match its digest"
        return data

    def json_blob(self, digest: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.blob(digest))
        return doc

    def closure(self, digest: str, media_type: str) -> dict[str, bytes]:
        """Every blob reachable from the manifest or index `digest`, by digest (itself too)."""
        out: dict[str, bytes] = {}
        pending = [(digest, media_type)]
        while pending:
            d, mt = pending.pop()
            if d in out:
                continue
            raw = self.blob(d)
            out[d] = raw
            doc = json.loads(raw)
            if mt in INDEX_TYPES or "manifests" in doc:
                pending.extend((m["digest"], m["mediaType"]) for m in doc["manifests"])
            else:
                for desc in [doc["config"], *doc["layers"]]:
                    out[desc["digest"]] = self.blob(desc["digest"])
        return out

    def add_index(self, tag: str, children: Sequence[tuple[str, dict[str, str]]]) -> str:
        """Write an OCI image index over the tagged images `children` (tag, platform),
        name it `tag` in index.json, and return its digest."""
        manifests = []
        for child_tag, platform in children:
            desc = self.descriptor(child_tag)
            manifests.append(
                {
                    "mediaType": desc["mediaType"],
                    "digest": desc["digest"],
                    "size": desc["size"],
                    "platform": platform,
                }
            )
        raw = json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
            separators=(",", ":"),
        ).encode()
        digest = sha256(raw)
        (self.path / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(raw)
        index = self.index()
        index["manifests"] = [
            d for d in index["manifests"] if (d.get("annotations") or {}).get(REF_NAME) != tag
        ]
        index["manifests"].append(
            {
                "mediaType": OCI_INDEX,
                "digest": digest,
                "size": len(raw),
                "annotations": {REF_NAME: tag},
            }
        )
        (self.path / "index.json").write_text(json.dumps(index))
        return digest


def umoci_image(
    layout: Path,
    tag: str,
    layers: Sequence[Mapping[str, bytes]],
    *,
    workdir: Path,
    architecture: str = "amd64",
    labels: Mapping[str, str] | None = None,
) -> Layout:
    """Build the image `layout:tag` offline with umoci: one layer per mapping of
    relative path -> content, inserted under /layerN, then the platform and labels."""
    require("umoci")
    if not (layout / "index.json").exists():
        run(["umoci", "init", "--layout", layout])
    image = f"{layout}:{tag}"
    run(["umoci", "new", "--image", image])
    for n, files in enumerate(layers):
        src = workdir / f"umoci-src-{tag}-{n}"
        for rel, content in files.items():
            target = src / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        run(["umoci", "insert", "--rootless", "--image", image, src, f"/layer{n}"])
    config = ["umoci", "config", "--image", image, "--architecture", architecture, "--os", "linux"]
    for key, value in (labels or {}).items():
        config += ["--config.label", f"{key}={value}"]
    run(config)
    return Layout(layout)


def assert_same_image(src: Layout, src_tag: str, dst: Layout, dst_tag: str) -> dict[str, bytes]:
    """The two tagged images are byte-for-byte the same: top descriptor, and every
    manifest, config and layer reachable from it. Returns the blobs by digest."""
    a, b = src.descriptor(src_tag), dst.descriptor(dst_tag)
    assert (b["mediaType"], b["digest"], b["size"]) == (a["mediaType"], a["digest"], a["size"])
    blobs_a = src.closure(a["digest"], a["mediaType"])
    blobs_b = dst.closure(b["digest"], b["mediaType"])
    assert sorted(blobs_b) == sorted(blobs_a)
    for digest, data in blobs_a.items():
        assert blobs_b[digest] == data, f"blob {digest} differs after the round trip"
    return blobs_a
