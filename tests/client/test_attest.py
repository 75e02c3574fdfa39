"""`ocinest attest` and `ocinest verify --attestations`: in-toto attestations (provenance,
SBOMs) on every node of a tree, signed and stored as cosign v3 stores them, read back by
independent implementations (sigstore's published models, securesystemslib's DSSE)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey
from sigstore_protobuf_specs.dev.sigstore.bundle.v1 import Bundle

from ocinest.client import keys as client_keys
from ocinest.oci.digest import Digest
from ocinest.oci.signing import (
    PREDICATE_ANNOTATION,
    predicate_type,
    referrer_manifest,
    sign_bundle,
    verify_bundle,
)
from tests.client.conftest import Cli
from tests.client.helpers import Tree
from tests.conftest import Server

SLSA1 = "https://slsa.dev/provenance/v1"
PROVENANCE = {"buildDefinition": {"buildType": "https://example.com/ko"}, "runDetails": {}}
NODE = Digest.of(b"a node")


def test_predicate_types_as_cosign_names_them() -> None:
    assert predicate_type("slsaprovenance1") == SLSA1
    assert predicate_type("spdxjson") == "https://spdx.dev/Document"
    assert predicate_type("https://example.com/review/v1") == "https://example.com/review/v1"
    for bad in ("custom", "sbom", "not a uri", "https://sigstore.dev/cosign/sign/v1"):
        with pytest.raises(ValueError):
            predicate_type(bad)


def test_an_attestation_bundle_the_published_models_read() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    raw = sign_bundle(key, "reg/p", NODE, SLSA1, PROVENANCE)
    doc = json.loads(raw)
    assert json.loads(Bundle.from_dict(copy.deepcopy(doc)).to_json()) == doc
    envelope = doc["dsseEnvelope"]
    envelope["signatures"] = [{**s, "keyid": "k"} for s in envelope["signatures"]]
    public = SSlibKey.from_crypto(key.public_key(), keyid="k")
    assert list(Envelope.from_dict(copy.deepcopy(envelope)).verify([public], 1)) == ["k"]
    stmt = json.loads(base64.b64decode(envelope["payload"]))
    assert stmt["predicateType"] == SLSA1 and stmt["predicate"] == PROVENANCE
    assert stmt["subject"] == [{"name": "reg/p", "digest": {"sha256": NODE.encoded}}]
    manifest = json.loads(referrer_manifest(raw, {"digest": str(NODE)}, kind=SLSA1))
    assert manifest["annotations"][PREDICATE_ANNOTATION] == SLSA1
    assert verify_bundle(raw, key.public_key(), NODE, SLSA1).names == ("reg/p",)


def _keys(cli: Cli, tmp_path: Path) -> tuple[Path, Path]:
    cli.env["OCINEST_KEY_PASSWORD"] = ""
    cli("key", "generate", "--output", str(tmp_path / "k"))
    return tmp_path / "k.key", tmp_path / "k.pub"


def _verify(cli: Cli, ref: str, pub: Path, *extra: str) -> tuple[int, list[dict[str, object]]]:
    out = cli("verify", ref, "--key", str(pub), "-r", "--json", *extra, check=False)
    return out.returncode, json.loads(out.stdout)["nodes"]


def test_attest_every_node_and_verify_them(
    server: Server, ko_tree: Tree, cli: Cli, tmp_path: Path
) -> None:
    private, public = _keys(cli, tmp_path)
    predicate = tmp_path / "provenance.json"
    predicate.write_text(json.dumps(PROVENANCE))
    ref = f"{server.host}/myrepo/ko-build:build-1"
    cli("sign", ref, "--key", str(private), "-r")
    # Signed, not attested: --attestations fails every node, saying so.
    code, nodes = _verify(cli, ref, public, "--attestations")
    assert code == 1 and {n["reason"] for n in nodes} == {"no attestation"}
    assert _verify(cli, ref, public)[0] == 0  # signatures alone still pass

    out = cli(
        "attest",
        ref,
        "--key",
        str(private),
        "--predicate",
        str(predicate),
        "--type",
        "slsaprovenance1",
        "-r",
        "--json",
    )
    attested = json.loads(out.stdout)
    assert attested["predicateType"] == SLSA1 and len(attested["attested"]) == 5
    code, nodes = _verify(cli, ref, public, "--attestations")
    assert code == 0 and all(n["attestations"] == [SLSA1] for n in nodes)
    code, nodes = _verify(cli, ref, public, "--attestations", "--type", "spdxjson")
    assert code == 1
    assert {n["reason"] for n in nodes} == {"no attestation of type https://spdx.dev/Document"}

    # Another key's attestations do not count, and the reason names the key.
    (tmp_path / "other").mkdir()
    _, other_pub = _keys(cli, tmp_path / "other")
    code, nodes = _verify(cli, ref, other_pub, "--attestations")
    assert code == 1 and all("another key" in str(n["reason"]) for n in nodes)


def test_an_attestation_about_another_node_fails_naming_its_node(
    server: Server, ko_tree: Tree, cli: Cli, tmp_path: Path
) -> None:
    private, public = _keys(cli, tmp_path)
    ref = f"{server.host}/myrepo/ko-build:build-1"
    cli("sign", ref, "--key", str(private), "-r")
    # An attestation of app1, attached to app2: its subject is not app2.
    signer = client_keys.load_private(private, lambda confirm=False: "")
    _, app1, _ = ko_tree.manifests["app1"]
    _, app2, app2_body = ko_tree.manifests["app2"]
    bundle = sign_bundle(signer, "x", Digest.parse(app1), SLSA1, PROVENANCE)
    subject = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": app2,
        "size": len(app2_body),
    }
    body = referrer_manifest(bundle, subject, kind=SLSA1)
    repo = f"{server.url}/v2/myrepo/ko-build/app2"
    for blob in (b"{}", bundle):
        r = httpx.post(
            f"{repo}/blobs/uploads/", params={"digest": str(Digest.of(blob))}, content=blob
        )
        assert r.status_code == 201, r.text
    r = httpx.put(
        f"{repo}/manifests/{Digest.of(body)}",
        content=body,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert r.status_code == 201, r.text
    code, nodes = _verify(cli, ref, public, "--attestations")
    assert code == 1
    bad = next(n for n in nodes if n["digest"] == app2)
    assert f"the signature is of {app1}, not {app2}" in str(bad["reason"])


def test_bad_predicates_and_types_are_usage_errors(
    server: Server, ko_tree: Tree, cli: Cli, tmp_path: Path
) -> None:
    private, _ = _keys(cli, tmp_path)
    ref = f"{server.host}/myrepo/ko-build:build-1"
    notjson = tmp_path / "p.txt"
    notjson.write_text("not json")
    out = cli(
        "attest",
        ref,
        "--key",
        str(private),
        "--predicate",
        str(notjson),
        "--type",
        "slsaprovenance1",
        check=False,
    )
    assert out.returncode == 2 and "is not JSON" in out.stderr and "Traceback" not in out.stderr
    good = tmp_path / "p.json"
    good.write_text("{}")
    out = cli(
        "attest",
        ref,
        "--key",
        str(private),
        "--predicate",
        str(good),
        "--type",
        "sbom",
        check=False,
    )
    assert out.returncode == 2 and "neither a URI nor one of" in out.stderr
