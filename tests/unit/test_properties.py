"""Property-based tests of the pure model: names, tags, digests, child paths and manifests
either parse or fail with the right OCI error, never with another exception."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from ocinest.oci.digest import Digest, DigestError
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.manifest import parse_manifest
from ocinest.oci.names import COMPONENT, MAX_NAME_LENGTH, child_path_problem, is_tag, validate_name

NAME = re.compile(rf"^{COMPONENT}(?:/{COMPONENT})*$")
names = st.from_regex(NAME, fullmatch=True).filter(lambda n: len(n) <= MAX_NAME_LENGTH)
hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(names)
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name


@given(st.text(max_size=300))
def test_any_text_is_a_valid_name_or_name_invalid(text: str) -> None:
    try:
        validate_name(text)
    except OCIError as err:
        assert err.code is ErrorCode.NAME_INVALID
        assert err.status == 400
    else:
        assert NAME.match(text) and len(text) <= MAX_NAME_LENGTH


@given(st.text(max_size=200))
def test_tags_follow_the_spec_grammar(text: str) -> None:
    assert is_tag(text) == bool(re.fullmatch(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}", text))


@given(hexes)
def test_sha256_digests_round_trip(encoded: str) -> None:
    value = f"sha256:{encoded}"
    assert str(Digest.parse(value)) == value


@given(st.text(max_size=300))
def test_any_text_is_a_digest_or_digest_invalid(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except DigestError as err:
        assert "digest" in str(err)
    else:
        assert str(digest) == text
        assert digest.algorithm in ("sha256", "sha512")


@given(st.binary(max_size=64))
def test_digest_of_matches_parse(data: bytes) -> None:
    d = Digest.of(data)
    assert Digest.parse(str(d)) == d


@given(names, st.text(max_size=80))
def test_child_paths_never_raise(parent: str, child: str) -> None:
    problem = child_path_problem(parent, child)
    if problem is None:
        assert NAME.match(child) and len(f"{parent}/{child}") <= MAX_NAME_LENGTH


@given(
    st.binary(max_size=512),
    st.sampled_from(
        [None, "application/json", "text/plain", "application/vnd.oci.image.index.v1+json"]
    ),
)
def test_any_bytes_are_a_manifest_or_an_oci_error(raw: bytes, content_type: str | None) -> None:
    try:
        parse_manifest(raw, content_type)
    except OCIError as err:
        assert err.code in (ErrorCode.MANIFEST_INVALID, ErrorCode.SIZE_INVALID)


@settings(max_examples=300)
@given(
    json_values,
    st.sampled_from(
        [
            None,
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    ),
)
def test_any_json_is_a_manifest_or_an_oci_error(doc: object, content_type: str | None) -> None:
    try:
        parse_manifest(json.dumps(doc).encode(), content_type)
    except OCIError as err:
        assert err.code is ErrorCode.MANIFEST_INVALID
    else:
        assert isinstance(doc, dict) and doc["schemaVersion"] == 2


descriptors = st.fixed_dictionaries(
    {
        "mediaType": st.sampled_from(["application/vnd.oci.image.layer.v1.tar", "application/x"]),
        "digest": hexes.map(lambda h: f"sha256:{h}"),
        "size": st.integers(min_value=0, max_value=2**40),
    },
    optional={
        "annotations": st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
    },
)


@given(descriptors, st.lists(descriptors, max_size=5))
def test_valid_image_manifests_parse_with_their_references(
    config: dict[str, object], layers: list[dict[str, object]]
) -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    }
    raw = json.dumps(doc).encode()
    manifest = parse_manifest(raw, "application/vnd.oci.image.manifest.v1+json")
    assert manifest.digest == Digest.of(raw)
    assert [str(r.descriptor.digest) for r in manifest.references] == [
        config["digest"],
        *[layer["digest"] for layer in layers],
    ]
    assert manifest.artifact_type == config["mediaType"]
