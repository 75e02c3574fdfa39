"""Listing tags and the catalog of repositories, with `n`/`last` pagination and Link headers."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest

from tests.conftest import oci_image, push_blob, push_image, pushed
from tests.integration.ocihttp import assert_error, assert_status, link_next

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

# Deliberately not in order; sorted by bytes: digits < upper case < "_" < lower case,
# and "-" < "." < digits.
TAGS = ["b", "A", "a", "_x", "1", "B.1", "a-b", "a.b", "a_b", "a0", "Z", "latest", "v1.0", "v1-0"]


def push_tags(client: httpx.Client, repo: str, tags: list[str]) -> None:
    body = oci_image(client, repo)
    for tag in tags:
        pushed(client, repo, tag, body)


def tags_page(client: httpx.Client, repo: str, **params: str | int) -> httpx.Response:
    r = client.get(f"/v2/{repo}/tags/list", params=params)
    assert_status(r, 200)
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert set(doc) == {"name", "tags"}
    assert doc["name"] == repo
    return r


def catalog_page(client: httpx.Client, **params: str | int) -> httpx.Response:
    r = client.get("/v2/_catalog", params=params)
    assert_status(r, 200)
    assert r.headers["Content-Type"].startswith("application/json")
    assert set(r.json()) == {"repositories"}
    return r


def byte_sorted(items: list[str]) -> list[str]:
    return sorted(items, key=lambda s: s.encode())


# Tags


def test_tags_are_listed_in_byte_order(client: httpx.Client) -> None:
    push_tags(client, "tags/order", TAGS)
    r = tags_page(client, "tags/order")
    assert r.json()["tags"] == byte_sorted(TAGS)
    assert r.json()["tags"][:5] == ["1", "A", "B.1", "Z", "_x"]
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", [1, 2, 3, 5, 13])
def test_tags_pagination_follows_link(client: httpx.Client, n: int) -> None:
    repo = "tags/pages"
    push_tags(client, repo, TAGS)
    expected = byte_sorted(TAGS)
    seen: list[str] = []
    r = tags_page(client, repo, n=n)
    pages = 1
    while True:
        page = r.json()["tags"]
        assert len(page) == min(n, len(expected) - len(seen))
        seen += page
        target = link_next(r)
        if target is None:
            break
        assert target == f"/v2/{repo}/tags/list?" + urllib.parse.urlencode(
            {"n": n, "last": page[-1]}
        )
        r = client.get(target)
        assert_status(r, 200)
        pages += 1
        assert pages <= len(expected), "pagination does not end"
    assert seen == expected
    assert pages == -(-len(expected) // n)


def test_tags_link_header_format(client: httpx.Client) -> None:
    repo = "tags/link"
    push_tags(client, repo, ["a", "b", "c"])
    r = tags_page(client, repo, n=2)
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["Link"] == f'</v2/{repo}/tags/list?n=2&last=b>; rel="next"'


def test_last_page_has_no_link(client: httpx.Client) -> None:
    repo = "tags/lastpage"
    push_tags(client, repo, ["a", "b", "c", "d"])
    r = tags_page(client, repo, n=2, last="b")
    assert r.json()["tags"] == ["c", "d"]
    assert "Link" not in r.headers


def test_n_larger_than_count(client: httpx.Client) -> None:
    push_tags(client, "tags/big", ["x", "y"])
    r = tags_page(client, "tags/big", n=1000)
    assert r.json()["tags"] == ["x", "y"]
    assert "Link" not in r.headers


def test_n_zero_gives_empty_list_without_link(client: httpx.Client) -> None:
    push_tags(client, "tags/zero", ["x", "y"])
    r = tags_page(client, "tags/zero", n=0)
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", [10**20, "0" * 50 + "3"], ids=["1e20", "zero-padded"])
def test_large_or_padded_n(client: httpx.Client, n: int | str) -> None:
    push_tags(client, "tags/huge", ["x", "y", "z"])
    r = tags_page(client, "tags/huge", n=n)
    assert r.json()["tags"] == ["x", "y", "z"]
    assert "Link" not in r.headers


def test_last_without_n(client: httpx.Client) -> None:
    push_tags(client, "tags/last", ["a", "b", "c", "d"])
    assert tags_page(client, "tags/last", last="b").json()["tags"] == ["c", "d"]


def test_last_that_is_not_a_tag(client: httpx.Client) -> None:
    push_tags(client, "tags/between", ["a", "c", "e"])
    assert tags_page(client, "tags/between", last="b").json()["tags"] == ["c", "e"]
    assert tags_page(client, "tags/between", last="B").json()["tags"] == ["a", "c", "e"]


def test_last_past_the_end(client: httpx.Client) -> None:
    push_tags(client, "tags/end", ["a", "b"])
    r = tags_page(client, "tags/end", n=5, last="z")
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


@pytest.mark.parametrize(
    "n",
    ["-1", "abc", "1.5", "0x10", " 1", "+1", "1e3", "\u00b2", "\u0661", "\uff11"],
    ids=[
        "-1",
        "abc",
        "1.5",
        "0x10",
        "space-1",
        "+1",
        "1e3",
        "superscript-2",
        "arabic-1",
        "fullwidth-1",
    ],
)
def test_invalid_n_is_400(client: httpx.Client, n: str) -> None:
    push_tags(client, "tags/badn", ["a"])
    r = client.get("/v2/tags/badn/tags/list", params={"n": n})
    assert_error(r, 400, "PAGINATION_NUMBER_INVALID")


def test_unknown_repository_is_name_unknown(client: httpx.Client) -> None:
    assert_error(client.get("/v2/tags/nosuchrepo/tags/list"), 404, "NAME_UNKNOWN")


def test_repository_without_tags_lists_none(client: httpx.Client) -> None:
    push_blob(client, "tags/notags", b"just a blob")
    assert tags_page(client, "tags/notags").json()["tags"] == []


def test_tags_after_deleting_them_all(client: httpx.Client) -> None:
    repo = "tags/alldeleted"
    digest, _ = push_image(client, repo, "only")
    assert_status(client.delete(f"/v2/{repo}/manifests/{digest}"), 202)
    assert tags_page(client, repo).json()["tags"] == []


def test_tags_are_per_repository(client: httpx.Client) -> None:
    push_tags(client, "tags/iso", ["parent"])
    push_tags(client, "tags/iso/child", ["child"])
    push_tags(client, "tags/iso2", ["sibling"])
    assert tags_page(client, "tags/iso").json()["tags"] == ["parent"]
    assert tags_page(client, "tags/iso/child").json()["tags"] == ["child"]


# Catalog


def test_empty_catalog(client: httpx.Client) -> None:
    r = catalog_page(client)
    assert r.json() == {"repositories": []}
    assert "Link" not in r.headers


REPOS = ["ab", "a_b", "a0", "a/b", "a.b", "a-b", "a", "z/y/x", "b"]


def test_catalog_lists_repositories_in_byte_order(client: httpx.Client) -> None:
    for repo in REPOS:
        push_blob(client, repo, repo.encode())
    r = catalog_page(client)
    assert r.json()["repositories"] == byte_sorted(REPOS)
    assert r.json()["repositories"][:5] == ["a", "a-b", "a.b", "a/b", "a0"]
    assert "Link" not in r.headers


def test_catalog_includes_repositories_with_manifests(client: httpx.Client) -> None:
    push_image(client, "cat/images", "v1")
    assert "cat/images" in catalog_page(client).json()["repositories"]


@pytest.mark.parametrize("n", [1, 2, 4, 9])
def test_catalog_pagination_follows_link(client: httpx.Client, n: int) -> None:
    for repo in REPOS:
        push_blob(client, repo, repo.encode())
    expected = byte_sorted(REPOS)
    seen: list[str] = []
    r = catalog_page(client, n=n)
    while True:
        page = r.json()["repositories"]
        assert len(page) == min(n, len(expected) - len(seen))
        seen += page
        target = link_next(r)
        if target is None:
            break
        assert target == "/v2/_catalog?" + urllib.parse.urlencode({"n": n, "last": page[-1]})
        r = client.get(target)
        assert_status(r, 200)
        assert len(seen) < len(expected), "pagination does not end"
    assert seen == expected


def test_catalog_link_header_format(client: httpx.Client) -> None:
    for repo in ("r1", "r2", "r3"):
        push_blob(client, repo, b"x")
    r = catalog_page(client, n=2)
    assert r.json()["repositories"] == ["r1", "r2"]
    assert r.headers["Link"] == '</v2/_catalog?n=2&last=r2>; rel="next"'


def test_catalog_n_zero_and_last(client: httpx.Client) -> None:
    for repo in ("r1", "r2", "r3"):
        push_blob(client, repo, b"x")
    r = catalog_page(client, n=0)
    assert r.json()["repositories"] == []
    assert "Link" not in r.headers
    assert catalog_page(client, last="r1").json()["repositories"] == ["r2", "r3"]
    r = catalog_page(client, n=1, last="r2")
    assert r.json()["repositories"] == ["r3"]
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", [10**20, "0" * 50 + "3"], ids=["1e20", "zero-padded"])
def test_catalog_large_or_padded_n(client: httpx.Client, n: int | str) -> None:
    for repo in ("r1", "r2"):
        push_blob(client, repo, b"x")
    r = catalog_page(client, n=n)
    assert r.json()["repositories"] == ["r1", "r2"]
    assert "Link" not in r.headers


@pytest.mark.parametrize(
    "n",
    ["-1", "abc", "1.5", "\u00b2", "\u0661"],
    ids=["-1", "abc", "1.5", "superscript-2", "arabic-1"],
)
def test_catalog_invalid_n_is_400(client: httpx.Client, n: str) -> None:
    assert_error(client.get("/v2/_catalog", params={"n": n}), 400, "PAGINATION_NUMBER_INVALID")
