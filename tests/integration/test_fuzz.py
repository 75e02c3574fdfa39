"""A fuzz run on the manifest PUT path of a live server: no input escapes as a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server, free_port, push_blob
from tests.manifests import OCI_MANIFEST

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
media_types = st.sampled_from(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/json",
        "text/plain; charset=utf-8",
        "",
    ]
)
references = st.sampled_from(
    ["latest", "v1.0", "sha256:" + "a" * 64, "bad:digest", "-x", "x" * 200]
)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[httpx.Client, dict[str, object]]]:
    srv = Server(Path(tmp_path_factory.mktemp("fuzz")) / "data", free_port(), ["--no-access-log"])
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        layer = b"layer"
        config = push_blob(c, "fuzz", b"{}")
        base = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config,
                "size": 2,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": push_blob(c, "fuzz", layer),
                    "size": 5,
                }
            ],
        }
        # One client for every example (a client each would cost more than the request).
        yield c, base
    srv.stop()


def _mutations(base: dict[str, object]) -> st.SearchStrategy[object]:
    keys = st.sampled_from(
        [
            "schemaVersion",
            "mediaType",
            "config",
            "layers",
            "manifests",
            "subject",
            "annotations",
            "artifactType",
        ]
    )
    return st.one_of(
        json_values,
        st.builds(lambda k, v: {**base, k: v}, keys, json_values),
        st.builds(lambda k: {key: val for key, val in base.items() if key != k}, keys),
    )


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_manifest_put_never_500(
    fuzz_server: tuple[httpx.Client, dict[str, object]], data: st.DataObject
) -> None:
    c, base = fuzz_server
    doc = data.draw(_mutations(base))
    body = data.draw(st.one_of(st.just(json.dumps(doc).encode()), st.binary(max_size=200)))
    content_type = data.draw(media_types)
    reference = data.draw(references)
    r = c.put(
        f"/v2/fuzz/manifests/{reference}", content=body, headers={"Content-Type": content_type}
    )
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["errors"][0]["code"]
    else:
        assert r.status_code == 201
