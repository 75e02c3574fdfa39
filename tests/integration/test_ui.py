"""The web UI over HTTP (no browser): pages, paging, filtering, escaping, errors as HTML only
under /ui/, the setting that turns it off, and authorization as the API's."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.client.helpers import SIG_TYPE, Tree, build_tree
from tests.conftest import (
    Server,
    error_codes,
    free_port,
    oci_image,
    push_image,
    push_index,
    pushed,
)
from tests.manifests import index_manifest, nested, sha256
from tests.uikit import USERS, links, secured_server

# What the first page may weigh (the bound), and the marks of a page that loads
# anything from elsewhere.
FIRST_PAGE_BYTES = 200_000
EXTERNAL = re.compile(r"""(src|href)=["']?(https?:)?//""")


def next_link(page: str) -> str | None:
    found = re.search(r'<a href="([^"]*)" rel="next">', page)
    return html.unescape(found.group(1)) if found else None


def test_pages_of_a_signed_nested_tree(client: httpx.Client) -> None:
    tree = build_tree(client, "myrepo/ko-build", "build-1")
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"] == "/ui/"

    r = client.get("/ui/")
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert len(r.content) < FIRST_PAGE_BYTES and not EXTERNAL.search(r.text)
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    # Nested repositories are listed below their parent, by their child path.
    parent = r.text.index('href="/ui/myrepo/ko-build"')
    assert r.text.index('href="/ui/myrepo/ko-build/app1">app1<') > parent
    assert '"/ui/myrepo/ko-build/app2">app2<' in r.text

    r = client.get("/ui/myrepo/ko-build")
    assert r.status_code == 200
    assert "build-1" in r.text and tree.digest[:19] in r.text
    # When the tag was pushed (a minute's slack for the clock turning over meanwhile).
    now = time.time()
    assert any(time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) in r.text for t in (now, now - 60))
    assert "/ui/myrepo/ko-build/-/tree/build-1" in links(r.text)
    assert "/ui/myrepo/ko-build/app1" in links(r.text)  # the repositories below

    r = client.get(f"/ui/myrepo/ko-build/-/manifest/{tree.digest}")
    assert r.status_code == 200
    host = client.base_url.netloc.decode()
    ref = f"{host}/myrepo/ko-build@{tree.digest}"
    for command in (
        f"podman pull --tls-verify=false {ref}",
        f"skopeo copy --all --src-tls-verify=false docker://{ref} oci:ko-build",
        f"ocinest pull {ref} -o ko-build --referrers",
    ):
        assert f'value="{command}"' in r.text
    app1_digest = tree.manifests["app1"][1]
    assert f"/ui/myrepo/ko-build/app1/-/manifest/{app1_digest}" in links(r.text)

    # The image: config, layers with sizes, and its signature.
    r = client.get(f"/ui/myrepo/ko-build/app1/-/manifest/{app1_digest}")
    doc = json.loads(tree.manifests["app1"][2])
    assert doc["config"]["digest"] in r.text and doc["layers"][0]["digest"] in r.text
    assert "Layers (1)" in r.text and "Referrers (1)" in r.text and SIG_TYPE in r.text
    assert tree.signature is not None and tree.signature[0][:19] in r.text

    r = client.get("/ui/myrepo/ko-build/-/tree/build-1")
    assert r.status_code == 200
    for _, digest, _ in tree.manifests.values():
        assert digest[:19] in r.text
    assert "linux/amd64" in r.text and "linux/arm64" in r.text
    assert "1 referrer<" in r.text and "5 nodes" in r.text
    assert r.text.count("<details") == 2  # the root (open) and app2 (closed)
    assert '<details class="n" open>' in r.text


def test_catalog_filter_and_paging(client: httpx.Client) -> None:
    names = [f"team{i}/app" for i in range(7)] + ["other/thing"]
    for name in names:
        push_image(client, name, "v1")
    shown: list[str] = []
    url: str | None = "/ui/?n=3"
    pages = 0
    while url:
        page = client.get(url).text
        shown += [h for h in links(page) if h.startswith("/ui/") and h.count("/") >= 3]
        url = next_link(page)
        pages += 1
    assert pages == 3 and shown == [f"/ui/{n}" for n in sorted(names)]

    page = client.get("/ui/", params={"q": "team", "n": "4"}).text
    assert links(page).count("/ui/other/thing") == 0
    assert [h for h in links(page) if h.startswith("/ui/team")] == [
        f"/ui/team{i}/app" for i in range(4)
    ]
    assert next_link(page) == "/ui/?q=team&last=team3%2Fapp&n=4"
    page = client.get(next_link(page) or "").text
    assert [h for h in links(page) if h.startswith("/ui/team")] == [
        f"/ui/team{i}/app" for i in range(4, 7)
    ]
    assert next_link(page) is None and 'rel="first"' in page
    assert "No repositories match" in client.get("/ui/", params={"q": "nothing"}).text
    r = client.get("/ui/", params={"n": "x"})
    assert r.status_code == 400 and "PAGINATION_NUMBER_INVALID" in r.text


def test_tags_paging(client: httpx.Client) -> None:
    body = oci_image(client, "many")
    tags = [f"t{i:04d}" for i in range(250)]
    for tag in tags:
        pushed(client, "many", tag, body)
    seen: list[str] = []
    url: str | None = "/ui/many"
    while url:
        page = client.get(url).text
        seen += re.findall(r'href="/ui/many/-/manifest/(t\d{4})"', page)
        url = next_link(page)
    assert seen == tags
    page = client.get("/ui/many", params={"n": "1000"}).text
    assert len(re.findall(r"<tr><td>", page)) == 250


def test_html_in_content_is_escaped(client: httpx.Client) -> None:
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    body = oci_image(
        client,
        "xss/x",
        annotations={evil: evil, "org.opencontainers.image.title": evil},
        artifactType="application/vnd.x+json",
    )
    digest = pushed(client, "xss/x", "v1", body)
    index = index_manifest(nested(body, "x"), annotations={"note": evil})
    assert push_index(client, "xss", "set", index).status_code == 201
    for url in (
        "/ui/xss/x",
        f"/ui/xss/x/-/manifest/{digest}",
        "/ui/xss/-/manifest/set",
        "/ui/xss/-/tree/set",
    ):
        page = client.get(url).text
        assert "<script>alert" not in page and "<img src=x" not in page, url
    page = client.get(f"/ui/xss/x/-/manifest/{digest}").text
    quote = "(?:&#34;|&quot;)"
    shown = re.findall(rf"&lt;script&gt;alert\({quote}x{quote}\)&lt;/script&gt;", page)
    assert len(shown) >= 3  # the key, the value and the layer's title, each as text
    # A name the API refuses, with markup in it, is refused here too: escaped.
    r = client.get("/ui/%3Cscript%3E/-/manifest/latest")
    assert r.status_code == 400 and "<script>" not in r.text and "NAME_INVALID" in r.text
    assert "<script>" not in client.get("/ui/nope/-/tree/<b>").text


def test_errors_are_html_under_ui_and_json_elsewhere(client: httpx.Client) -> None:
    push_image(client, "here", "v1")
    for url, status, code in (
        ("/ui/unknown", 404, "NAME_UNKNOWN"),
        ("/ui/here/-/manifest/v2", 404, "MANIFEST_UNKNOWN"),
        ("/ui/here/-/manifest/sha256:abc", 400, "DIGEST_INVALID"),
        ("/ui/here/-/tree/nope", 404, "MANIFEST_UNKNOWN"),
        ("/ui/Bad..Name", 400, "NAME_INVALID"),
    ):
        r = client.get(url)
        assert r.status_code == status and r.headers["Content-Type"].startswith("text/html"), url
        assert code in r.text, url
    r = client.post("/ui/here")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert r.headers["Content-Type"].startswith("text/html")
    # The API is as it was: JSON errors, its routes and answers unchanged.
    r = client.get("/v2/unknown/tags/list")
    assert r.status_code == 404 and error_codes(r) == ["NAME_UNKNOWN"]
    assert client.get("/v2/_catalog").json() == {"repositories": ["here"]}
    assert client.get("/v2/here/tags/list").json() == {"name": "here", "tags": ["v1"]}
    r = client.get("/nothing")
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"


def test_ui_off(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", free_port(), settings={"ui": False})
    srv.start()
    try:
        with httpx.Client(base_url=srv.url) as c:
            for url in ("/", "/ui/", "/ui/x"):
                r = c.get(url)
                assert r.status_code == 404 and error_codes(r) == ["UNSUPPORTED"], url
            assert c.get("/v2/").status_code == 200
    finally:
        srv.stop()


# Authorization: the pages show what the API would, and nothing else.


@pytest.fixture(params=["basic", "token"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Tree]]:
    srv, tree = secured_server(tmp_path, request.param)
    yield srv, tree
    srv.stop()


def test_pages_show_what_the_caller_may_pull(secured: tuple[Server, Tree]) -> None:
    srv, tree = secured
    r = httpx.get(f"{srv.url}/ui/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="ocinest"'
    assert r.headers["Content-Type"].startswith("text/html") and "secret" not in r.text
    r = httpx.get(f"{srv.url}/ui/", auth=("bob", "wrong"))
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")

    bob = httpx.Client(base_url=srv.url, auth=("bob", USERS["bob"]), timeout=30)
    alice = httpx.Client(base_url=srv.url, auth=("alice", USERS["alice"]), timeout=30)
    with bob, alice:
        assert "secret/thing" in alice.get("/ui/").text
        page = bob.get("/ui/").text
        assert "signed in as bob" in page
        assert [h for h in links(page) if h.startswith("/ui/") and h != "/ui/"] == [
            "/ui/shared/set"
        ]
        for url in ("/ui/secret/thing", "/ui/secret/thing/-/manifest/v1", "/ui/shared/set/app1"):
            r = bob.get(url)
            assert r.status_code in (401, 403), url
            assert "sha256:" not in r.text, url
        # Pull on the parent covers its tree by digest (rule 4), not the children's tags.
        page = bob.get("/ui/shared/set/-/tree/v1").text
        for _, digest, _ in tree.manifests.values():
            assert digest[:19] in page
        assert "/ui/shared/set/app1" not in links(page)  # its tags are not bob's to list
        assert "/ui/shared/set/app1" in links(alice.get("/ui/shared/set/-/tree/v1").text)
        app1 = tree.manifests["app1"][1]
        page = bob.get(f"/ui/shared/set/app1/-/manifest/{app1}").text
        assert "Referrers (1)" in page and SIG_TYPE in page
        r = bob.get(f"/ui/shared/set/app1/-/manifest/{sha256(b'no such manifest')}")
        assert r.status_code in (401, 403)
