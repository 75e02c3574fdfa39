"""What stock consumers (skopeo, podman, oras-py, umoci) do with the parents `ocinest index
create` builds, on a live ocinest (native mode) and on Debian's docker-registry (compat mode):
the matrix of docs/consumers.md, cell by cell.

Three trees, each built once per module and pushed to both registries:

* `ko`: the realistic ko build, made with buildah and pushed with skopeo, pinned from the
  reference list `ko build --image-refs` writes (`ocinest index create --children-from`):
  app1 a multi-platform index (amd64 + arm64, as ko writes it), app2 arm64, app3 s390x, and an
  SBOM-like artifact pushed with oras-py. A set (artifactType, no platforms).
* `images`: a set of single-platform images only (app3, then app2), where the stock tools do
  not fail but take the first member as "the image".
* `platforms`: one multi-platform image made of nested children (`index create --platforms`).

Each cell runs one consumer command and classifies what came out: the node it read or wrote
(`Got`), the files it wrote (`Files`), or its failure (`Fails`, with the tool's message). The
EXPECTED table is what the installed tools do (docs/consumers.md names their versions, and
the last test checks it does); compat mode reads the same as native mode to every one of
them."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import oras.client
import pytest
from interop_helpers import Layout, Podman, Skopeo, new_podman, new_skopeo, require, run
from tests.client.conftest import Distribution
from tests.conftest import Server, free_port
from tests.manifests import OCI_INDEX, OCI_MANIFEST, sha256

SET_TYPE = "application/vnd.dev.ocinest.set.v1+json"
SBOM_TYPE = "application/spdx+json"
SBOM_CONFIG = "application/vnd.ocinest.test.sbom.config.v1+json"
SBOM_FILE = "sbom.spdx.json"
SBOM = '{"spdxVersion":"SPDX-2.3","name":"ko-build"}'
NAME_LABEL = "dev.ocinest.test.name"
# Every image of the module: name -> platform. Each holds the file /hello whose content is
# its name, and its name as a label.
IMAGES = {
    "app1-amd64": "amd64",
    "app1-arm64": "arm64",
    "app2": "arm64",
    "app3": "s390x",
    "app-amd64": "amd64",
    "app-arm64": "arm64",
}
REGISTRIES = ("ocinest", "distribution")
# One worker runs the whole matrix, so that the images and registries are built once.
pytestmark = pytest.mark.xdist_group("consumer-matrix")


def ocinest(*args: str) -> str:
    """The ocinest command line (the worktree's, through PYTHONPATH); its standard output."""
    return run([sys.executable, "-m", "ocinest", *args]).stdout.strip()


# What a consumer did


@dataclass(frozen=True)
class Got:
    """The tool read or wrote exactly the node `name` (an image, a child index, or a whole
    tree: for a copy, every blob under it, digests unchanged), printing `warning` (expected:
    a part of it; "" when none is asserted)."""

    name: str
    warning: str = ""


@dataclass(frozen=True)
class Files:
    """The tool wrote these files (oras-py pull)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Fails:
    """The tool exited non-zero; its message contains `message`."""

    message: str


Outcome = Got | Files | Fails


def matches(seen: Outcome, expected: Outcome) -> bool:
    if isinstance(seen, Fails) and isinstance(expected, Fails):
        return expected.message in seen.message
    if isinstance(seen, Got) and isinstance(expected, Got):
        return seen.name == expected.name and expected.warning in seen.warning
    return seen == expected


# The build


@dataclass(frozen=True)
class Tree:
    name: str
    repo: str  # the parent's repository
    digest: str
    child: str  # the name of the child read through the parent
    child_repo: str  # where that child lives


@dataclass
class Target:
    """One registry holding every tree, and what the module knows about its nodes."""

    kind: str
    host: str
    trees: dict[str, Tree]
    # digest -> node name, for every manifest and index; config digest -> image name.
    names: dict[str, str]
    configs: dict[str, str]

    def digest(self, name: str) -> str:
        return next(d for d, n in self.names.items() if n == name)

    def ref(self, tree: Tree, node: str | None = None) -> str:
        """The parent, or (`node`) a node read through the parent by digest: "child" is the
        tree's child, "own" that child at its own repository, any other name that node."""
        if node is None:
            return f"{self.host}/{tree.repo}@{tree.digest}"
        if node == "own":
            return f"{self.host}/{tree.child_repo}@{self.digest(tree.child)}"
        return f"{self.host}/{tree.repo}@{self.digest(tree.child if node == 'child' else node)}"


def buildah_images(work: Path) -> Layout:
    """Build IMAGES and app1's index with buildah (vfs storage of its own) into one OCI layout,
    tagged by name (app1 for the index). Layers compressed, as ko writes them, so that every
    later copy keeps the digests."""
    require("buildah")
    store = ["--root", work / "storage", "--runroot", work / "run", "--storage-driver", "vfs"]

    def buildah(*args: str | Path) -> str:
        return run(["buildah", *store, *args]).stdout.strip()

    layout = work / "layout"
    for name, arch in IMAGES.items():
        src = work / "src" / name
        src.mkdir(parents=True)
        (src / "hello").write_text(name)
        container = buildah("from", "--arch", arch, "scratch")
        buildah("copy", container, src / "hello", "/hello")
        buildah("config", "--os", "linux", "--arch", arch, "--label", f"{NAME_LABEL}={name}",
                container)  # fmt: skip
        buildah("commit", "--quiet", "--format", "oci", "--disable-compression=false",
                container, f"oci:{layout}:{name}")  # fmt: skip
        buildah("rm", container)
    buildah("manifest", "create", "app1")
    for name in ("app1-amd64", "app1-arm64"):
        buildah("manifest", "add", "app1", f"oci:{layout}:{name}")
    buildah("manifest", "push", "--quiet", "--all", "--format", "oci", "app1",
            f"oci:{layout}:app1")  # fmt: skip
    return Layout(layout)


def push_trees(kind: str, host: str, skopeo: Skopeo, built: Layout, work: Path) -> Target:
    """Push the images with skopeo and the SBOM with oras-py to `host` as ko would, then pin
    the three trees with `ocinest index create`."""
    refs = []
    for name, repo in [
        ("app1", "ko-build/app1"),
        ("app2", "ko-build/app2"),
        ("app3", "ko-build/app3"),
        ("app-amd64", "multi/app/amd64"),
        ("app-arm64", "multi/app/arm64"),
    ]:
        digest_file = work / f"{name}.digest"
        skopeo(
            "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
            "--digestfile", digest_file,
            f"oci:{built.path}:{name}", f"docker://{host}/{repo}:build-1",
        )  # fmt: skip
        refs.append(f"{host}/{repo}@{digest_file.read_text().strip()}")
    (work / SBOM_FILE).write_text(SBOM)
    (work / "sbom-config.json").write_text("{}")
    pusher = oras.client.OrasClient(hostname=host, insecure=True)
    cwd = Path.cwd()
    os.chdir(work)  # oras-py pushes files below the working directory only
    try:
        r = pusher.push(
            target=f"{host}/ko-build/sbom:build-1",
            files=[f"{SBOM_FILE}:{SBOM_TYPE}"],
            manifest_config=f"sbom-config.json:{SBOM_CONFIG}",
        )
    finally:
        os.chdir(cwd)
    assert r.status_code == 201, r.text
    sbom = r.headers["Docker-Content-Digest"]
    # The reference list ko writes (one host/repo@digest a line), and the SBOM's.
    refs_file = work / "image-refs.txt"
    refs_file.write_text("\n".join([*refs[:3], f"{host}/ko-build/sbom@{sbom}", ""]))

    def pin(*args: str) -> str:
        return ocinest("index", "create", *args).split("@", 1)[1]

    app2, app3 = refs[1].split("@")[1], refs[2].split("@")[1]
    ko = pin(f"{host}/ko-build:build-1", "--children-from", str(refs_file))
    images = pin(f"{host}/ko-build:images", f"app3=@{app3}", f"app2=@{app2}")
    platforms = pin(f"{host}/multi/app:v1", "amd64=:build-1", "arm64=:build-1", "--platforms")
    trees = {
        "ko": Tree("ko", "ko-build", ko, "app1", "ko-build/app1"),
        "images": Tree("images", "ko-build", images, "app3", "ko-build/app3"),
        "platforms": Tree("platforms", "multi/app", platforms, "app-arm64", "multi/app/arm64"),
    }
    names = {built.descriptor(n)["digest"]: n for n in [*IMAGES, "app1"]}
    names |= {sbom: "sbom"} | {t.digest: t.name for t in trees.values()}
    configs = {}
    for name in IMAGES:
        manifest = built.json_blob(built.descriptor(name)["digest"])
        configs[manifest["config"]["digest"]] = name
    return Target(kind, host, trees, names, configs)


@dataclass
class Tools:
    skopeo: Skopeo
    podman: Podman
    work: Path

    def folder(self, *parts: str) -> Path:
        """A path of its own under the module's folder, its parent made."""
        path = self.work.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tools]:
    work = tmp_path_factory.mktemp("consumers")
    with new_podman(work) as podman:
        yield Tools(new_skopeo(work), podman, work)


@pytest.fixture(scope="module")
def built(tools: Tools) -> Layout:
    return buildah_images(tools.work / "buildah")


@pytest.fixture(scope="module")
def targets(
    tools: Tools, built: Layout, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Target]]:
    root = tmp_path_factory.mktemp("registries")
    server = Server(root / "ocinest" / "data", free_port())
    (root / "distribution").mkdir()
    distribution = Distribution(root / "distribution", free_port())
    server.start()
    try:
        distribution.start()
        out = {}
        for kind, host in [("ocinest", server.host), ("distribution", distribution.host)]:
            (root / kind / "push").mkdir(parents=True)
            out[kind] = push_trees(kind, host, tools.skopeo, built, root / kind / "push")
        yield out
    finally:
        distribution.stop()
        server.stop()


# The consumer operations: each returns what the tool did.


def index_bytes(target: Target, tree: Tree) -> bytes:
    r = httpx.get(
        f"http://{target.host}/v2/{tree.repo}/manifests/{tree.digest}",
        headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"},
    )
    assert r.status_code == 200, r.text
    return r.content


def failure(proc: Any) -> Fails:
    return Fails(proc.stderr.strip())


def copied(target: Target, layout: Layout, tag: str) -> Outcome:
    """What a layout holds at `tag`: the named node, every blob under it present."""
    desc = layout.descriptor(tag)
    layout.closure(desc["digest"], desc["mediaType"])  # every blob there, digests checked
    return Got(target.names.get(desc["digest"], desc["digest"]))


def skopeo_inspect_raw(t: Tools, target: Target, tree: Tree) -> Outcome:
    proc = t.skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target.ref(tree)}")
    return Got(target.names[sha256(proc.stdout.encode())])


def skopeo_inspect(arch: str) -> Callable[[Tools, Target, Tree], Outcome]:
    def op(t: Tools, target: Target, tree: Tree) -> Outcome:
        proc = t.skopeo(
            "--override-os", "linux", "--override-arch", arch,
            "inspect", "--tls-verify=false", f"docker://{target.ref(tree)}", check=False,
        )  # fmt: skip
        if proc.returncode:
            return failure(proc)
        seen = json.loads(proc.stdout)
        # skopeo reports the parent's digest whatever image it read.
        assert seen["Digest"] == tree.digest
        return Got(seen["Labels"][NAME_LABEL])

    return op


def skopeo_copy(*flags: str, node: str | None = None) -> Callable[[Tools, Target, Tree], Outcome]:
    def op(t: Tools, target: Target, tree: Tree) -> Outcome:
        dest = Layout(t.folder("copies", target.kind, tree.name, *flags, str(node)))
        src = target.ref(tree, node)
        proc = t.skopeo(
            "--override-os", "linux", "--override-arch", "amd64", "copy", *flags,
            "--src-tls-verify=false", f"docker://{src}", f"oci:{dest.path}:x", check=False,
        )  # fmt: skip
        return failure(proc) if proc.returncode else copied(target, dest, "x")

    return op


def podman_pull(arch: str, node: str | None = None) -> Callable[[Tools, Target, Tree], Outcome]:
    def op(t: Tools, target: Target, tree: Tree) -> Outcome:
        ref = target.ref(tree, node)
        proc = t.podman("pull", "--quiet", "--tls-verify=false", "--signature-policy",
                        t.podman.policy, "--os", "linux", "--arch", arch, ref,
                        check=False)  # fmt: skip
        try:
            if proc.returncode:
                return failure(proc)
            ids = t.podman.images()
            assert len(ids) == 1, ids
            return Got(target.configs[f"sha256:{ids[0]}"], proc.stderr.strip())
        finally:
            t.podman("rmi", "--all", "--force")

    return op


def oras_client(target: Target) -> Any:
    return oras.client.OrasClient(hostname=target.host, insecure=True)


def oras_get_manifest(t: Tools, target: Target, tree: Tree) -> Outcome:
    doc = oras_client(target).get_manifest(target.ref(tree))
    assert doc == json.loads(index_bytes(target, tree))
    return Got(tree.name)


def oras_pull(node: str | None) -> Callable[[Tools, Target, Tree], Outcome]:
    def op(t: Tools, target: Target, tree: Tree) -> Outcome:
        out = t.folder("oras", target.kind, tree.name, str(node))
        ref = target.ref(tree, node)
        written = oras_client(target).pull(target=ref, outdir=str(out))
        files = sorted(Path(p).relative_to(out).as_posix() for p in written)
        assert sorted(p.name for p in out.glob("*")) == files
        assert all((out / f).read_text() == SBOM for f in files)
        return Files(tuple(files))

    return op


def ocinest_pull(t: Tools, target: Target, tree: Tree) -> Outcome:
    out = Layout(t.folder("pulled", target.kind, tree.name))
    ocinest("pull", target.ref(tree), "-o", str(out.path), "--tag", "x")
    raw = t.skopeo("inspect", "--raw", f"oci:{out.path}:x").stdout
    assert sha256(raw.encode()) == tree.digest
    return copied(target, out, "x")


def umoci_unpack(layout: Path, bundle: Path) -> Outcome:
    """`umoci unpack` of the layout's tag x; the outcome is the image whose /hello came out."""
    proc = run(["umoci", "unpack", "--rootless", "--image", f"{layout}:x", bundle], check=False)
    return failure(proc) if proc.returncode else Got((bundle / "rootfs" / "hello").read_text())


def umoci_unpack_parent(t: Tools, target: Target, tree: Tree) -> Outcome:
    """umoci on the layout `ocinest pull` wrote (every tree is in one)."""
    layout = t.folder("umoci", target.kind, tree.name)
    ocinest("pull", target.ref(tree), "-o", str(layout), "--tag", "x")
    return umoci_unpack(layout, t.folder("umoci", target.kind, tree.name, "bundle"))


def umoci_unpack_child(t: Tools, target: Target, tree: Tree) -> Outcome:
    """The workaround: skopeo copies one image (arm64) of the child into a layout, umoci
    unpacks it."""
    layout = t.folder("one", target.kind, tree.name)
    t.skopeo(
        "--override-os", "linux", "--override-arch", "arm64", "copy", "--src-tls-verify=false",
        f"docker://{target.ref(tree, 'child')}", f"oci:{layout}:x",
    )  # fmt: skip
    return umoci_unpack(layout, t.folder("one", target.kind, tree.name, "bundle"))


# podman's warning when it pulls an image of another platform than asked for.
MISMATCH = "does not match the expected platform"
LIST = "Unexpectedly received a manifest list instead of a manifest for a single image"
AMBIGUOUS = "tag is ambiguous: x"
OPS: dict[str, Callable[[Tools, Target, Tree], Outcome]] = {
    "skopeo inspect --raw P": skopeo_inspect_raw,
    "skopeo inspect P (amd64)": skopeo_inspect("amd64"),
    "skopeo inspect P (arm64)": skopeo_inspect("arm64"),
    "skopeo copy P": skopeo_copy(),
    "skopeo copy --all P": skopeo_copy("--all"),
    "skopeo copy --all P@child": skopeo_copy("--all", node="child"),
    "skopeo copy --all P/c@child": skopeo_copy("--all", node="own"),
    "skopeo copy P@sbom": skopeo_copy(node="sbom"),
    "podman pull P (amd64)": podman_pull("amd64"),
    "podman pull P (arm64)": podman_pull("arm64"),
    "podman pull P@child (arm64)": podman_pull("arm64", "child"),
    "podman pull P/c@child (arm64)": podman_pull("arm64", "own"),
    "podman pull P@sbom": podman_pull("amd64", "sbom"),
    "oras-py get_manifest P": oras_get_manifest,
    "oras-py pull P": oras_pull(None),
    "oras-py pull P@sbom": oras_pull("sbom"),
    "umoci unpack P": umoci_unpack_parent,
    "skopeo copy P@child (arm64) + umoci unpack": umoci_unpack_child,
    "ocinest pull P": ocinest_pull,
}
# (tree, operation) -> what the tool does, on both registries.
EXPECTED: dict[tuple[str, str], Outcome] = {
    ("ko", "skopeo inspect --raw P"): Got("ko"),
    ("ko", "skopeo inspect P (amd64)"): Got("app1-amd64"),
    ("ko", "skopeo inspect P (arm64)"): Got("app1-arm64"),
    ("ko", "skopeo copy P"): Fails(LIST),
    ("ko", "skopeo copy --all P"): Fails(f"copying image 1/4 from manifest list: {LIST}"),
    ("ko", "skopeo copy --all P@child"): Got("app1"),
    ("ko", "skopeo copy --all P/c@child"): Got("app1"),
    ("ko", "podman pull P (amd64)"): Fails(LIST),
    ("ko", "podman pull P (arm64)"): Fails(LIST),
    ("ko", "podman pull P@child (arm64)"): Got("app1-arm64"),
    ("ko", "podman pull P/c@child (arm64)"): Got("app1-arm64"),
    ("ko", "skopeo copy P@sbom"): Got("sbom"),
    ("ko", "podman pull P@sbom"): Fails("unsupported image-specific operation on artifact"),
    ("ko", "oras-py get_manifest P"): Got("ko"),
    ("ko", "oras-py pull P"): Files(()),
    ("ko", "oras-py pull P@sbom"): Files((SBOM_FILE,)),
    ("ko", "umoci unpack P"): Fails(AMBIGUOUS),
    ("ko", "skopeo copy P@child (arm64) + umoci unpack"): Got("app1-arm64"),
    ("ko", "ocinest pull P"): Got("ko"),
    ("images", "skopeo inspect --raw P"): Got("images"),
    ("images", "skopeo inspect P (amd64)"): Got("app3"),
    ("images", "skopeo inspect P (arm64)"): Got("app3"),
    ("images", "skopeo copy P"): Got("app3"),
    ("images", "skopeo copy --all P"): Got("images"),
    ("images", "skopeo copy --all P@child"): Got("app3"),
    ("images", "skopeo copy --all P/c@child"): Got("app3"),
    ("images", "podman pull P (amd64)"): Got("app3", MISMATCH),
    ("images", "podman pull P (arm64)"): Got("app3", MISMATCH),
    ("images", "podman pull P@child (arm64)"): Got("app3", MISMATCH),
    ("images", "podman pull P/c@child (arm64)"): Got("app3", MISMATCH),
    ("images", "oras-py get_manifest P"): Got("images"),
    ("images", "oras-py pull P"): Files(()),
    ("images", "umoci unpack P"): Fails(AMBIGUOUS),
    ("images", "skopeo copy P@child (arm64) + umoci unpack"): Got("app3"),
    ("images", "ocinest pull P"): Got("images"),
    ("platforms", "skopeo inspect --raw P"): Got("platforms"),
    ("platforms", "skopeo inspect P (amd64)"): Got("app-amd64"),
    ("platforms", "skopeo inspect P (arm64)"): Got("app-arm64"),
    ("platforms", "skopeo copy P"): Got("app-amd64"),
    ("platforms", "skopeo copy --all P"): Got("platforms"),
    ("platforms", "skopeo copy --all P@child"): Got("app-arm64"),
    ("platforms", "skopeo copy --all P/c@child"): Got("app-arm64"),
    ("platforms", "podman pull P (amd64)"): Got("app-amd64"),
    ("platforms", "podman pull P (arm64)"): Got("app-arm64"),
    ("platforms", "podman pull P@child (arm64)"): Got("app-arm64"),
    ("platforms", "podman pull P/c@child (arm64)"): Got("app-arm64"),
    ("platforms", "oras-py get_manifest P"): Got("platforms"),
    ("platforms", "oras-py pull P"): Files(()),
    ("platforms", "umoci unpack P"): Fails(AMBIGUOUS),
    ("platforms", "skopeo copy P@child (arm64) + umoci unpack"): Got("app-arm64"),
    ("platforms", "ocinest pull P"): Got("platforms"),
}


@pytest.mark.parametrize("registry", REGISTRIES)
@pytest.mark.parametrize(("tree", "operation"), list(EXPECTED))
def test_consumer(
    tools: Tools, targets: dict[str, Target], registry: str, tree: str, operation: str
) -> None:
    target = targets[registry]
    seen = OPS[operation](tools, target, target.trees[tree])
    assert matches(seen, EXPECTED[tree, operation]), seen


def test_parent_shapes_and_digests(targets: dict[str, Target]) -> None:
    """The set reads as a set (artifactType, no platforms); the --platforms parent as a
    multi-platform image; each tree has the same digest in native and compat mode."""
    native, compat = targets["ocinest"], targets["distribution"]
    assert {n: t.digest for n, t in native.trees.items()} == {
        n: t.digest for n, t in compat.trees.items()
    }
    for target in (native, compat):
        for name in ("ko", "images"):
            doc = json.loads(index_bytes(target, target.trees[name]))
            assert doc["artifactType"] == SET_TYPE
            assert all("platform" not in m for m in doc["manifests"])
        ko = json.loads(index_bytes(target, target.trees["ko"]))
        assert [target.names[m["digest"]] for m in ko["manifests"]] == [
            "app1", "app2", "app3", "sbom"
        ]  # fmt: skip
        assert ko["manifests"][3]["artifactType"] == SBOM_CONFIG
        doc = json.loads(index_bytes(target, target.trees["platforms"]))
        assert "artifactType" not in doc
        assert [
            (target.names[m["digest"]], m["platform"]["architecture"]) for m in doc["manifests"]
        ] == [("app-amd64", "amd64"), ("app-arm64", "arm64")]


def test_docs_name_the_versions_observed() -> None:
    """docs/consumers.md gives the matrix for the installed versions; a new version of any
    tool fails here until the matrix is checked against it and the docs name it."""
    docs = (Path(__file__).parents[2] / "docs" / "consumers.md").read_text()
    versions = {
        "skopeo": run(["skopeo", "--version"]).stdout.split()[2],
        "podman": run(["podman", "--version"]).stdout.split()[2],
        "umoci": run(["umoci", "--version"]).stdout.split()[2].split("+")[0],
        "buildah": run(["buildah", "--version"]).stdout.split()[2],
        "oras-py": oras.__version__,
        "docker-registry": run(["docker-registry", "--version"]).stdout.split()[2].split("+")[0],
    }
    for tool, version in versions.items():
        assert f"{tool} {version}" in docs, (tool, version)
