"""Signing and verifying every node of a tree (the root, each child, grandchild and platform
manifest), each node's signature a cosign v3 bundle stored as an OCI 1.1 referrer in the
node's own repository (the `sha256-<hex>` tag scheme where the registry has no referrers API),
so that stock cosign verifies any node by itself. Attestations (in-toto statements of another
predicate type: provenance, SBOMs) are signed and stored the same way."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ocinest.oci.digest import Digest
from ocinest.oci.nested import EMPTY_JSON, descriptor
from ocinest.oci.signing import (
    BUNDLE_TYPES,
    BUNDLE_V03,
    COSIGN_SIGN_PREDICATE,
    PREDICATE_ANNOTATION,
    SignatureProblem,
    key_hint,
    referrer_manifest,
    sign_bundle,
    verify_bundle,
)

from .base import Repository, no_progress
from .errors import ClientError, NotFound
from .ops import open_repository
from .reference import Ref
from .remote import Client
from .tree import Node, walk

MAX_BUNDLE = 16 << 20  # an attestation may carry a large SBOM


def _nodes(root: Node, recursive: bool) -> list[Node]:
    """The nodes to sign or check: the root, and with `recursive` every manifest below it
    (referrers are not nodes, nor the members of a sparse index that were never pushed)."""
    if not recursive:
        return [root]
    out: list[Node] = []

    def visit(node: Node) -> None:
        out.append(node)
        for child in node.children:
            if not child.missing:
                visit(child)

    visit(root)
    return out


async def _tree(client: Client, ref: Ref, recursive: bool, *actions: str) -> list[Node]:
    repo = open_repository(client, ref)
    repo.declare(*actions)
    root = await walk(repo, ref.reference, depth=None if recursive else 0)
    nodes = _nodes(root, recursive)
    for node in nodes:
        node.repo.declare(*actions)
    return nodes


@dataclass(frozen=True)
class Signed:
    repository: str
    digest: Digest
    signature: Digest  # the referrer manifest's digest
    pushed: bool  # False: that very signature was there already

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": str(self.digest),
            "signature": str(self.signature),
            "pushed": self.pushed,
        }


async def _sign_node(
    node: Node,
    key: ec.EllipticCurvePrivateKey,
    kind: str = COSIGN_SIGN_PREDICATE,
    predicate: dict[str, Any] | None = None,
    mount_from: Sequence[Repository] = (),
) -> Signed:
    repo = node.repo
    bundle = sign_bundle(key, repo.display, node.digest, kind, predicate)
    subject = descriptor(node.media_type, node.digest, node.size)
    body = referrer_manifest(bundle, subject, kind=kind)
    await repo.push_blob(
        Digest.of(EMPTY_JSON), len(EMPTY_JSON), EMPTY_JSON, no_progress, mount_from
    )
    await repo.push_blob(Digest.of(bundle), len(bundle), bundle, no_progress)
    doc = json.loads(body)
    referrer = descriptor(
        doc["mediaType"],
        Digest.of(body),
        len(body),
        artifact_type=BUNDLE_V03,
        annotations=doc["annotations"],
    )
    pushed = await repo.put_referrer(body, referrer, node.digest)
    return Signed(repo.display, node.digest, Digest.of(body), pushed)


async def sign(
    client: Client, ref: Ref, key: ec.EllipticCurvePrivateKey, *, recursive: bool = True
) -> list[Signed]:
    """Sign the node at `ref`, and with `recursive` every node below it."""
    return await _sign_all(await _tree(client, ref, recursive, "pull", "push"), key)


async def _sign_all(
    nodes: list[Node],
    key: ec.EllipticCurvePrivateKey,
    kind: str = COSIGN_SIGN_PREDICATE,
    predicate: dict[str, Any] | None = None,
) -> list[Signed]:
    """The first node alone, then the others at once, the empty config mounted from the
    first's repository rather than uploaded again."""
    first = await _sign_node(nodes[0], key, kind, predicate)
    rest = await asyncio.gather(
        *(_sign_node(n, key, kind, predicate, (nodes[0].repo,)) for n in nodes[1:])
    )
    return [first, *rest]


async def attest(
    client: Client,
    ref: Ref,
    key: ec.EllipticCurvePrivateKey,
    kind: str,
    predicate: dict[str, Any],
    *,
    recursive: bool = True,
) -> list[Signed]:
    """Attach to the node at `ref` (with `recursive`, to every node below it too) a signed
    in-toto statement of predicate type `kind` about it, as `cosign attest` does."""
    return await _sign_all(
        await _tree(client, ref, recursive, "pull", "push"), key, kind, predicate
    )


@dataclass(frozen=True)
class Checked:
    """One node's verdict: ok, or why not."""

    repository: str
    digest: Digest
    key_id: str
    ok: bool
    reason: str = ""
    attested: tuple[str, ...] = ()  # the predicate types of the attestations that verified

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": str(self.digest),
            "keyId": self.key_id,
            "ok": self.ok,
            "reason": self.reason,
            "attestations": list(self.attested),
        }

    def line(self) -> str:
        verdict = "ok" if self.ok else f"FAILED: {self.reason}"
        attested = f"  attested {', '.join(self.attested)}" if self.attested else ""
        return f"{self.repository}@{self.digest}  key {self.key_id}{attested}  {verdict}"


async def _bundle_of(node: Node, listed: dict[str, Any]) -> bytes:
    """The bundle layer of a signature referrer."""
    fetched = await node.repo.get_manifest(str(listed.get("digest")))
    try:
        doc = json.loads(fetched.body)
        layer = next(d for d in doc["layers"] if d.get("mediaType") in BUNDLE_TYPES)
        digest, size = Digest.parse(layer["digest"]), int(layer["size"])
    except (ValueError, KeyError, TypeError, StopIteration):
        raise SignatureProblem(
            f"signature {fetched.digest} is not a manifest with a bundle layer"
        ) from None
    if size > MAX_BUNDLE:
        raise SignatureProblem(f"signature {fetched.digest}: its bundle is {size} bytes")
    return await node.repo.fetch_blob_bytes(digest, size)


ANY = ""  # verify(attestations=ANY): an attestation of any predicate type


async def _check(node: Node, key: ec.EllipticCurvePublicKey, attestations: str | None) -> Checked:
    """The node passes when one of its signatures verifies with `key` for its own digest and,
    with `attestations` (a predicate type, or ANY), one such attestation does too."""
    ours = key_hint(key)
    signature: str | None = None  # the key hint of a signature that verified
    attested: list[str] = []
    problems: dict[bool, list[str]] = {True: [], False: []}  # by "is a signature"
    for entry in await node.repo.referrers(node.digest):
        if entry.get("artifactType") not in BUNDLE_TYPES:
            continue
        kind = str(
            (entry.get("annotations") or {}).get(PREDICATE_ANNOTATION, COSIGN_SIGN_PREDICATE)
        )
        is_signature = kind == COSIGN_SIGN_PREDICATE
        if is_signature and signature is not None:
            continue
        if not is_signature and (attestations is None or attestations not in (ANY, kind)):
            continue
        try:
            verified = verify_bundle(await _bundle_of(node, entry), key, node.digest, kind)
        except SignatureProblem as exc:
            problems[is_signature].append(f"{entry.get('digest')}: {exc.reason}")
            continue
        except (NotFound, ClientError) as exc:
            problems[is_signature].append(f"{entry.get('digest')}: {exc.message}")
            continue
        if is_signature:
            signature = verified.hint
        elif kind not in attested:
            attested.append(kind)
    reasons = []
    if signature is None:
        reasons.append("; ".join(problems[True]) or "unsigned: no signature referrer")
    if attestations is not None and not attested:
        what = f"no attestation of type {attestations}" if attestations else "no attestation"
        reasons.append("; ".join(problems[False]) or what)
    return Checked(
        node.repo.display,
        node.digest,
        signature or ours,
        not reasons,
        "; ".join(reasons),
        tuple(attested),
    )


async def verify(
    client: Client,
    ref: Ref,
    key: ec.EllipticCurvePublicKey,
    *,
    recursive: bool = True,
    attestations: str | None = None,
) -> list[Checked]:
    """Check the node at `ref` (with `recursive`, every node below it too): a node passes
    when any of its signatures verifies with `key` for its own digest, and, with
    `attestations` (a predicate type URI, or ANY), any attestation of that type does too."""
    nodes = await _tree(client, ref, recursive, "pull")
    return list(await asyncio.gather(*(_check(n, key, attestations) for n in nodes)))
