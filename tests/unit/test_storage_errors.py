"""Storage errors are the store's own; the registry maps each to an OCI error in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ocinest.oci.errors import ErrorCode
from ocinest.registry.errors import storage_error
from ocinest.storage import errors as se

STORAGE = Path(__file__).parents[2] / "src" / "ocinest" / "storage"


@pytest.mark.parametrize(
    ("error", "status", "codes"),
    [
        (se.UploadUnknown("u1"), 404, ["BLOB_UPLOAD_UNKNOWN"]),
        (se.UploadComplete("u1"), 400, ["BLOB_UPLOAD_INVALID"]),
        (se.UploadOffsetMismatch(10), 416, ["RANGE_INVALID"]),
        (se.DigestMismatch("sha256:aa", "sha256:bb"), 400, ["DIGEST_INVALID"]),
        (se.BlobUnknown("r", "sha256:aa"), 404, ["BLOB_UNKNOWN"]),
        (se.ManifestUnknown("r", "v1", kind="tag"), 404, ["MANIFEST_UNKNOWN"]),
        (se.ManifestReferenced("r/c", "sha256:aa", "r@sha256:bb"), 409, ["DENIED"]),
        (se.BackendUnavailable("blobs", "S3 did not answer"), 503, ["UNAVAILABLE"]),
        (se.ReachTooLarge("p", "sha256:aa", 10), 413, ["TREE_TOO_LARGE"]),
        (
            se.ReferencesInvalid(
                [
                    se.ReferenceProblem("blob missing", missing=True),
                    se.ReferenceProblem("blob size differs", missing=False),
                    se.ReferenceProblem("child differs", missing=False, nested=True),
                ]
            ),
            400,
            ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_BLOB_UNKNOWN"],
        ),
    ],
)
def test_each_storage_error_maps_to_an_oci_error(
    error: se.StorageError, status: int, codes: list[str]
) -> None:
    oci = storage_error(error)
    assert oci.status == status
    assert [e["code"] for e in oci.to_json()["errors"]] == codes
    assert all(e["detail"] for e in oci.to_json()["errors"])


def test_every_storage_error_has_a_mapping() -> None:
    kinds = [
        k
        for k in vars(se).values()
        if isinstance(k, type) and issubclass(k, se.StorageError) and k is not se.StorageError
    ]
    for kind in kinds:
        args = {
            se.ReferencesInvalid: ([se.ReferenceProblem("x", missing=True)],),
            se.UploadOffsetMismatch: (1,),
            se.DigestMismatch: ("a", "b"),
            se.BlobUnknown: ("r", "d"),
            se.ManifestUnknown: ("r", "d"),
            se.ManifestReferenced: ("r", "d", "i"),
            se.BackendUnavailable: ("metadata", "down"),
            se.ReachTooLarge: ("r", "d", 1),
        }.get(kind, ("u",))
        assert storage_error(kind(*args)).code is not ErrorCode.UNSUPPORTED


def test_an_outage_names_the_backend_and_when_to_retry() -> None:
    oci = storage_error(se.BackendUnavailable("metadata", "no connection within 5 s"))
    assert oci.headers["Retry-After"].isdigit()
    assert oci.to_json()["errors"][0]["detail"].startswith("metadata backend unavailable")


def test_a_refused_delete_says_why_in_the_message() -> None:
    """Stock clients print code and message, not detail."""
    entry = storage_error(se.ManifestReferenced("r/c", "sha256:aa", "r@sha256:bb")).to_json()
    assert "is referenced by index r@sha256:bb" in entry["errors"][0]["message"]


def test_storage_decides_no_http_answer() -> None:
    for path in STORAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("ocinest.registry", "ocinest.oci.errors")), (
                    f"{path.name} imports {node.module}"
                )
