"""The distribution-spec API: `RegistryClient` for one host (ping, discovery, catalog) and
`RemoteRepository` for one repository (manifests, tags, referrers, the tree endpoint, blobs).
Requests go through `Transport`; blob bodies through `Transfers`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest
from ocinest.oci.manifest import MAX_MANIFEST_SIZE
from ocinest.oci.nested import (
    NESTED_HEADER,
    NESTED_HEADER_VALUE,
    TREE_MANIFESTS,
    TREE_TAGS,
    TreeNode,
    fallback_referrers_index,
    fallback_tag,
    parse_tree_node,
    tree_path,
)

from .authorizer import repo_scope
from .base import MANIFEST_ACCEPT, Fetched, Progress, ProgressEvent, Repository, Source
from .errors import ClientError, DigestMismatch, NetworkError, NotFound
from .retry import TEMPORARY_ERRORS, describe
from .transfers import Transfers
from .transport import Options, Transport, next_link

__all__ = ["Client", "Options", "RegistryClient", "RemoteRepository", "repo_scope"]


class RegistryClient:
    """A client for one registry host."""

    def __init__(self, host: str, session: aiohttp.ClientSession, options: Options) -> None:
        self.host = host
        self.options = options
        self.transport = Transport(host, session, options)
        self._ping_headers: dict[str, str] | None = None

    def want(self, repository: str, *actions: str) -> None:
        """Declare access that later requests will need, so that one token covers it all
        (the token flow asks for several repositories' scopes at once)."""
        self.transport.auth.want([repo_scope(repository, *actions)])

    async def ping(self) -> dict[str, str]:
        """`GET /v2/`: whether the registry answers (authenticating if needed)."""
        if self._ping_headers is None:
            async with self.transport.call(
                "GET", "/v2/", fail=f"{self.host} is not an OCI registry: GET /v2/"
            ) as resp:
                self._ping_headers = {k.lower(): v for k, v in resp.headers.items()}
        return self._ping_headers

    async def nested(self) -> bool:
        """Whether the registry implements nested indexes (`Ocinest-Nested: 1`)."""
        await self.ping()
        return self.known_nested()

    def known_nested(self) -> bool:
        """Whether a ping already made said the registry implements nested indexes."""
        headers = self._ping_headers or {}
        return headers.get(NESTED_HEADER.lower()) == NESTED_HEADER_VALUE

    async def catalog(self) -> list[str]:
        out: list[str] = []
        path: str | URL | None = "/v2/_catalog?n=1000"
        while path is not None:
            async with self.transport.call(
                "GET",
                path,
                fail=f"cannot list the repositories of {self.host}",
                scopes=["registry:catalog:*"],
                what="GET /v2/_catalog",
            ) as resp:
                doc = await resp.json(content_type=None)
                out.extend(doc.get("repositories") or [])
                path = next_link(resp)
        return out

    def repository(self, name: str) -> RemoteRepository:
        return RemoteRepository(self, name)


# The most of a tree endpoint answer the client reads (ocinest's default `tree_max_bytes`
# is 16 MiB); past it the walk GETs each manifest instead.
MAX_TREE_ANSWER = 64 << 20


async def _read_bounded(resp: aiohttp.ClientResponse, limit: int, what: str, name: str) -> bytes:
    """The body of `resp` (`name`; `what` says what was being done), refused past `limit`
    bytes before more than that is read."""
    too_large = ClientError(f"{what}: {name} larger than {limit} bytes")
    if resp.content_length is not None and resp.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:  # read(n) may return less than n before the end
            more = await resp.content.read(limit + 1 - size)
            if not more:
                break
            chunks.append(more)
            size += len(more)
    except TEMPORARY_ERRORS as exc:
        raise NetworkError(f"{what}: {describe(exc)}") from None
    if size > limit:
        raise too_large
    return b"".join(chunks)


def _fetched(body: bytes, content_type: str, reference: str, where: str) -> Fetched:
    media_type = mt.sniff(body, content_type)
    if media_type is None:
        raise ClientError(f"manifest {reference} in {where} is not JSON")
    if Digest.looks_like(reference):
        wanted = Digest.parse(reference)
        digest = Digest.of(body, wanted.algorithm)
        if digest != wanted:
            raise DigestMismatch(f"manifest {reference} from {where} does not match its digest")
    else:
        digest = Digest.of(body)
    return Fetched(body, media_type, digest)


class RemoteRepository:
    """A repository of a registry: `host/name`."""

    def __init__(self, registry: RegistryClient, name: str, nested_path: str = "") -> None:
        self.registry = registry
        self.name = name
        self._nested_path = nested_path
        self._transport = registry.transport
        self._transfers = Transfers(registry.transport, name, self.display)
        self._pull = [repo_scope(name, "pull")]
        self._push = [repo_scope(name, "pull", "push")]

    @property
    def display(self) -> str:
        return f"{self.registry.host}/{self.name}"

    @property
    def nested_path(self) -> str:
        return self._nested_path

    @property
    def own_tags(self) -> bool:
        return True

    def child(self, path: str) -> RemoteRepository:
        nested = f"{self._nested_path}/{path}" if self._nested_path else path
        return RemoteRepository(self.registry, f"{self.name}/{path}", nested)

    def __repr__(self) -> str:
        return f"RemoteRepository({self.display!r})"

    def _path(self, kind: str, ref: str = "") -> str:
        return f"/v2/{self.name}/{kind}/{ref}"

    def declare(self, *actions: str) -> None:
        self.registry.want(self.name, *actions)

    async def native(self) -> bool:
        return await self.registry.nested()

    # Manifests

    async def get_manifest(self, reference: str | None) -> Fetched:
        reference = reference or "latest"
        what = f"cannot get manifest {self.display}:{reference}"
        async with self._transport.call(
            "GET",
            self._path("manifests", reference),
            not_found=f"manifest {reference} not found in {self.display}",
            fail=what,
            scopes=self._pull,
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"GET manifest {self.display}:{reference}",
        ) as resp:
            body = await _read_bounded(resp, MAX_MANIFEST_SIZE, what, "manifest")
            content_type = resp.headers.get("Content-Type", "")
        return _fetched(body, content_type, reference, self.display)

    async def head_manifest(self, reference: str) -> tuple[str, Digest, int] | None:
        """(media type, digest, size) of a manifest, or None when absent."""
        async with self._transport.call(
            "HEAD",
            self._path("manifests", reference),
            ok=(200, 404),
            fail=f"cannot check manifest {self.display}:{reference}",
            scopes=self._pull,
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"HEAD manifest {self.display}:{reference}",
        ) as resp:
            if resp.status == 404:
                return None
            digest = resp.headers.get("Docker-Content-Digest")
            length = resp.headers.get("Content-Length")
            media_type = mt.bare(resp.headers.get("Content-Type", ""))
        if digest is None or length is None or media_type not in mt.MANIFESTS:
            fetched = await self.get_manifest(reference)
            return fetched.media_type, fetched.digest, fetched.size
        return media_type, Digest.parse(digest), int(length)

    async def has_manifest(self, digest: Digest, *, root: bool = False) -> bool:
        return await self.head_manifest(str(digest)) is not None

    async def put_manifest(
        self, body: bytes, media_type: str, tag: str | None, *, root: bool = False
    ) -> Digest:
        digest, _ = await self._put_manifest(body, media_type, tag)
        return digest

    async def _put_manifest(
        self, body: bytes, media_type: str, tag: str | None
    ) -> tuple[Digest, bool]:
        """Push a manifest; (digest, whether the registry handled its subject itself)."""
        digest = Digest.of(body)
        reference = tag or str(digest)
        async with self._transport.call(
            "PUT",
            self._path("manifests", reference),
            ok=(200, 201, 202),
            fail=f"cannot push manifest to {self.display}:{reference}",
            scopes=self._push,
            headers={"Content-Type": media_type},
            body=lambda: body,
            what=f"PUT manifest {self.display}:{reference}",
        ) as resp:
            answered = resp.headers.get("Docker-Content-Digest")
            subject_handled = "OCI-Subject" in resp.headers
        same_algorithm = (answered or "").startswith(f"{digest.algorithm}:")
        if answered and same_algorithm and answered != str(digest):
            raise DigestMismatch(f"{self.display} stored the manifest as {answered}, not {digest}")
        return digest, subject_handled

    async def put_referrer(self, body: bytes, referrer: dict[str, Any], subject: Digest) -> bool:
        """Push a referrer of `subject`; where the registry has no referrers API, list it in
        the referrers tag scheme's index. Whether it was pushed (False: it was there)."""
        if await self.has_manifest(Digest.parse(referrer["digest"])):
            return False
        _, handled = await self._put_manifest(body, str(referrer["mediaType"]), None)
        if not handled:
            tag = fallback_tag(subject)
            try:
                existing: bytes | None = (await self.get_manifest(tag)).body
            except NotFound:
                existing = None
            index = fallback_referrers_index(existing, referrer)
            if index is not None:
                await self._put_manifest(index, mt.OCI_INDEX, tag)
        return True

    async def delete_manifest(self, digest: Digest) -> None:
        async with self._transport.call(
            "DELETE",
            self._path("manifests", str(digest)),
            ok=(200, 202, 204),
            not_found=f"manifest {digest} not found in {self.display}",
            fail=f"cannot delete {self.display}@{digest}",
            scopes=[repo_scope(self.name, "delete")],
            what=f"DELETE manifest {self.display}@{digest}",
        ):
            pass

    async def tags(self) -> list[str]:
        out: list[str] = []
        path: str | URL | None = f"/v2/{self.name}/tags/list"
        while path is not None:
            async with self._transport.call(
                "GET",
                path,
                not_found=f"repository {self.display} not found",
                fail=f"cannot list the tags of {self.display}",
                scopes=self._pull,
                what="GET tags",
            ) as resp:
                doc = await resp.json(content_type=None)
                out.extend(doc.get("tags") or [])
                path = next_link(resp)
        return out

    async def referrers(self, digest: Digest) -> list[dict[str, Any]]:
        """The referrers API, or the referrers tag scheme (`sha256-<hex>`) where the registry
        has no referrers API (distribution 2.x)."""
        async with self._transport.call(
            "GET",
            self._path("referrers", str(digest)),
            ok=(200, 400, 404, 405),
            fail=f"cannot list the referrers of {self.display}@{digest}",
            scopes=self._pull,
            what=f"GET referrers {self.display}@{digest}",
        ) as resp:
            if resp.status == 200 and mt.bare(resp.headers.get("Content-Type", "")) in (
                mt.OCI_INDEX,
                "application/json",
            ):
                doc = await resp.json(content_type=None)
                return [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
        try:
            fetched = await self.get_manifest(fallback_tag(digest))
        except NotFound:
            return []
        doc = json.loads(fetched.body)
        return [d for d in doc.get("manifests") or [] if isinstance(d, dict)]

    async def tree(
        self,
        reference: str,
        depth: int | None = None,
        *,
        manifests: bool = False,
        tags: bool = False,
    ) -> TreeNode | None:
        """The nested extension's tree endpoint; None where the registry has none."""
        if not await self.registry.nested():
            return None
        what = f"cannot get the tree of {self.display}:{reference}"
        params = {"depth": str(depth)} if depth is not None else {}
        params.update({k: "1" for k, on in ((TREE_MANIFESTS, manifests), (TREE_TAGS, tags)) if on})
        async with self._transport.call(
            "GET",
            tree_path(self.name, reference),
            fail=what,
            scopes=self._pull,
            params=params or None,
            what=f"GET tree {self.display}:{reference}",
        ) as resp:
            body = await _read_bounded(resp, MAX_TREE_ANSWER, what, "answer")
            try:
                return parse_tree_node(json.loads(body))
            except ValueError as exc:
                raise ClientError(f"{what}: {exc}") from None

    # Blobs

    async def blob_size(self, digest: Digest) -> int | None:
        async with self._transport.call(
            "HEAD",
            self._path("blobs", str(digest)),
            ok=(200, 404),
            fail=f"cannot check blob {digest} in {self.display}",
            scopes=self._pull,
            what=f"HEAD blob {self.display}@{digest}",
        ) as resp:
            if resp.status == 404:
                return None
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None and length.isdigit() else -1

    def local_blob(self, digest: Digest) -> Path | None:
        return None

    async def fetch_blob_bytes(self, digest: Digest, size: int, limit: int = 16 << 20) -> bytes:
        """A small blob (a config) in memory, verified."""
        if size > limit:
            raise ClientError(f"blob {digest} is {size} bytes; more than {limit} in memory")
        async with self._transport.call(
            "GET",
            self._path("blobs", str(digest)),
            not_found=f"blob {digest} not found in {self.display}",
            fail=f"cannot get blob {digest} from {self.display}",
            scopes=self._pull,
            what=f"GET blob {self.display}@{digest}",
        ) as resp:
            try:
                data = await resp.read()
            except TEMPORARY_ERRORS as exc:
                raise NetworkError(
                    f"downloading blob {digest} from {self.display}: {describe(exc)}"
                ) from None
        if Digest.of(data, digest.algorithm) != digest:
            raise DigestMismatch(f"blob {digest} from {self.display} does not match its digest")
        return data

    async def fetch_blob(self, digest: Digest, size: int, dest: Path, progress: Progress) -> None:
        """Stream the blob into `dest`, resuming with a Range request when the connection
        drops; verified against size and digest, and `dest` removed on any failure."""
        await self._transfers.download(digest, size, dest, progress)

    async def _mount(self, digest: Digest, source: str | None) -> URL | bool:
        """Cross-repository mount from `source` (None: from any repository of the registry
        the caller can pull, where the registry supports that): True when mounted, else the
        upload session the registry opened instead (or False)."""
        scopes, params = list(self._push), {"mount": str(digest)}
        if source is not None:
            scopes.append(repo_scope(source, "pull"))
            params["from"] = source
        async with self._transport.call(
            "POST",
            self._path("blobs", "uploads/"),
            ok=(201, 202, 401, 403, 404),
            fail=f"cannot mount blob {digest} into {self.display}",
            scopes=scopes,
            params=params,
            what=f"mount blob {digest} into {self.display}",
        ) as resp:
            if resp.status == 201:
                return True
            if resp.status == 202 and resp.headers.get("Location"):
                return resp.url.join(URL(resp.headers["Location"]))
        return False

    async def receive_blob(
        self, digest: Digest, size: int, src: Repository, progress: Progress
    ) -> str | None:
        return None  # a registry takes blobs by upload (push_blob) only

    async def push_blob(
        self,
        digest: Digest,
        size: int,
        source: Source,
        progress: Progress,
        mount_from: Sequence[Repository] = (),
        *,
        check: bool = True,
    ) -> str:
        """Make the blob present: skipped when there (asked with a HEAD unless `check` is
        off), mounted from a repository of the same registry among `mount_from` when one
        holds it (with none, on ocinest, from any repository the caller can pull that holds
        it, this one too: a mount without `from`), else uploaded."""
        if check and await self.blob_size(digest) is not None:
            progress(ProgressEvent("done", digest, size, outcome="skipped", where=self.display))
            return "skipped"
        sources: list[str | None] = []
        for candidate in mount_from:
            if (
                isinstance(candidate, RemoteRepository)
                and candidate.registry is self.registry
                and candidate.name not in (self.name, *sources)
            ):
                sources.append(candidate.name)
        if not sources and self.registry.known_nested():
            sources.append(None)  # (a copy pings its destination first: it knows)
        session: URL | None = None
        for name in sources:
            mounted = await self._mount(digest, name)
            if mounted is True:
                progress(ProgressEvent("done", digest, size, outcome="mounted", where=self.display))
                return "mounted"
            if isinstance(mounted, URL):
                session = mounted
                break
        data = source if isinstance(source, bytes | Path) else await source()
        await self._transfers.upload(digest, size, data, progress, session)
        return "uploaded"


class Client:
    """Registry clients for every host an operation touches, sharing one HTTP session."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self._session: aiohttp.ClientSession | None = None
        self._registries: dict[str, RegistryClient] = {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.options.connect_timeout,
                sock_connect=self.options.connect_timeout,
                sock_read=self.options.read_timeout,
            )
            connector = aiohttp.TCPConnector(limit=max(8, self.options.concurrency * 4))
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, auto_decompress=False
            )
        return self._session

    def registry(self, host: str) -> RegistryClient:
        if host not in self._registries:
            self._registries[host] = RegistryClient(host, self._http(), self.options)
        return self._registries[host]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
