"""An OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) seen as a repository.

A whole nested tree lives in one layout: every manifest and blob is a blob of the layout, the
root (and referrers) are entries of `index.json`, and the nested paths stay where they always
are, in the `dev.ocinest.repository` annotations of the indexes' descriptors. Children opened
with `child()` share the layout's store; they only remember their nested path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest, new_hasher
from ocinest.oci.names import child_path_problem
from ocinest.oci.nested import SUBJECT_ANNOTATION, TreeNode

from .base import Fetched, Progress, ProgressEvent, Repository, Source
from .errors import BadReference, ClientError, DigestMismatch, NotFound

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


class _Store:
    """The shared state of one layout folder."""

    def __init__(self, root: Path, create: bool) -> None:
        self.root = root
        self.lock = asyncio.Lock()
        marker = root / "oci-layout"
        if not marker.exists():
            if not create:
                if not root.exists():
                    raise NotFound(f"OCI layout {root} does not exist")
                raise NotFound(f"{root} is not an OCI image layout (no oci-layout file)")
            try:
                (root / "blobs").mkdir(parents=True, exist_ok=True)
                marker.write_text(json.dumps(LAYOUT_VERSION))
                if not (root / "index.json").exists():
                    self.write_index(
                        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
                    )
            except OSError as exc:
                raise ClientError(f"cannot create OCI layout {root}: {exc.strerror}") from None

    def blob_path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.encoded

    def read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        except (OSError, ValueError) as exc:
            raise ClientError(f"cannot read {path}: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifests", []), list):
            raise ClientError(f"{path} is not an image index")
        doc.setdefault("manifests", [])
        return doc

    def write_index(self, doc: dict[str, Any]) -> None:
        path = self.root / "index.json"
        tmp = path.with_name("index.json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, path)


def _sync_copy_verified(src: Path, dest: Path, digest: Digest, size: int) -> None:
    hasher = new_hasher(digest.algorithm)
    n = 0
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            hasher.update(chunk)
            fout.write(chunk)
            n += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    if Digest(digest.algorithm, hasher.hexdigest()) != digest or (size >= 0 and n != size):
        raise DigestMismatch(f"{src} does not match digest {digest} and size {size}")


class LayoutRepository:
    """An OCI image layout folder, with the interface of a remote repository."""

    def __init__(
        self,
        root: Path,
        *,
        create: bool = False,
        _store: _Store | None = None,
        nested_path: str = "",
    ) -> None:
        self.store = _store or _Store(root, create)
        self.root = root
        self._nested_path = nested_path

    @property
    def display(self) -> str:
        base = f"oci:{self.root}"
        return f"{base} ({self._nested_path})" if self._nested_path else base

    @property
    def nested_path(self) -> str:
        return self._nested_path

    @property
    def own_tags(self) -> bool:
        return False

    def child(self, path: str) -> LayoutRepository:
        problem = child_path_problem("x", path)
        if problem:
            raise BadReference(f"invalid child path in {self.display}: {problem}")
        nested = f"{self._nested_path}/{path}" if self._nested_path else path
        return LayoutRepository(self.root, _store=self.store, nested_path=nested)

    def __repr__(self) -> str:
        return f"LayoutRepository({self.display!r})"

    def declare(self, *actions: str) -> None:
        """A layout needs no access declared."""

    async def native(self) -> bool:
        return True  # one store holds the whole tree

    # Manifests

    def _entry(self, reference: str | None) -> dict[str, Any]:
        entries = [e for e in self.store.read_index()["manifests"] if isinstance(e, dict)]
        if reference is None:
            roots = [e for e in entries if SUBJECT_ANNOTATION not in (e.get("annotations") or {})]
            if len(roots) == 1:
                return roots[0]
            if not roots:
                raise NotFound(f"{self.display} holds no manifest")
            raise BadReference(
                f"{self.display} holds {len(roots)} manifests; name one as oci:PATH:TAG"
            )
        for e in entries:
            if (e.get("annotations") or {}).get(REF_NAME) == reference:
                return e
        raise NotFound(f"tag {reference} not found in {self.display}")

    async def get_manifest(self, reference: str | None) -> Fetched:
        if reference is None or not Digest.looks_like(reference):
            entry = self._entry(reference)
            digest = Digest.parse(str(entry.get("digest")))
            media_type = str(entry.get("mediaType", ""))
        else:
            digest = Digest.parse(reference)
            media_type = ""
        path = self.store.blob_path(digest)
        try:
            body = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"manifest {digest} not found in {self.display}") from None
        if Digest.of(body, digest.algorithm) != digest:
            raise DigestMismatch(f"manifest {digest} in {self.display} does not match its digest")
        sniffed = mt.sniff(body, media_type)
        if sniffed is None:
            raise ClientError(f"manifest {digest} in {self.display} is not JSON")
        return Fetched(body, sniffed, digest)

    async def head_manifest(self, reference: str) -> tuple[str, Digest, int] | None:
        try:
            fetched = await self.get_manifest(reference)
        except NotFound:
            return None
        return fetched.media_type, fetched.digest, fetched.size

    async def has_manifest(self, digest: Digest, *, root: bool = False) -> bool:
        if root:
            entries = self.store.read_index()["manifests"]
            return any(isinstance(e, dict) and e.get("digest") == str(digest) for e in entries)
        return self.store.blob_path(digest).exists()

    async def put_manifest(
        self, body: bytes, media_type: str, tag: str | None, *, root: bool = False, **_: Any
    ) -> Digest:
        digest = Digest.of(body)
        await self.push_blob(digest, len(body), body, lambda e: None)
        if root or tag:
            await self._add_entry(
                {"mediaType": media_type, "digest": str(digest), "size": len(body)}, tag
            )
        return digest

    async def put_referrer(self, body: bytes, referrer: dict[str, Any], subject: Digest) -> bool:
        """A referrer is an entry of index.json annotated with its subject."""
        digest = Digest.of(body)
        await self.push_blob(digest, len(body), body, lambda e: None)
        desc = {k: referrer[k] for k in ("mediaType", "artifactType") if referrer.get(k)}
        desc |= {"digest": str(digest), "size": len(body)}
        desc["annotations"] = {SUBJECT_ANNOTATION: str(subject)}
        await self._add_entry(desc, None)
        return True

    async def _add_entry(self, desc: dict[str, Any], tag: str | None) -> None:
        async with self.store.lock:
            doc = self.store.read_index()
            entries = [e for e in doc["manifests"] if isinstance(e, dict)]
            if tag:
                desc = {**desc, "annotations": {**desc.get("annotations", {}), REF_NAME: tag}}
                entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) != tag]
            else:
                if any(e.get("digest") == desc["digest"] for e in entries):
                    return
            entries.append(desc)
            doc["manifests"] = entries
            await asyncio.to_thread(self.store.write_index, doc)

    async def delete_manifest(self, digest: Digest) -> None:
        async with self.store.lock:
            doc = self.store.read_index()
            kept = [e for e in doc["manifests"] if e.get("digest") != str(digest)]
            if len(kept) != len(doc["manifests"]):
                doc["manifests"] = kept
                await asyncio.to_thread(self.store.write_index, doc)
            elif not self.store.blob_path(digest).exists():
                raise NotFound(f"manifest {digest} not found in {self.display}")

    async def tree(
        self,
        reference: str,
        depth: int | None = None,
        *,
        manifests: bool = False,
        tags: bool = False,
    ) -> TreeNode | None:
        return None  # walked manifest by manifest

    async def tags(self) -> list[str]:
        out = []
        for e in self.store.read_index()["manifests"]:
            name = (e.get("annotations") or {}).get(REF_NAME)
            if name:
                out.append(str(name))
        return out

    async def referrers(self, digest: Digest) -> list[dict[str, Any]]:
        out = []
        for e in self.store.read_index()["manifests"]:
            if (e.get("annotations") or {}).get(SUBJECT_ANNOTATION) == str(digest):
                desc = dict(e)
                ann = {k: v for k, v in (e.get("annotations") or {}).items()}
                ann.pop(SUBJECT_ANNOTATION, None)
                desc["annotations"] = ann
                if not ann:
                    del desc["annotations"]
                out.append(desc)
        return out

    # Blobs

    async def blob_size(self, digest: Digest) -> int | None:
        try:
            return self.store.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def local_blob(self, digest: Digest) -> Path | None:
        path = self.store.blob_path(digest)
        return path if path.exists() else None

    async def fetch_blob_bytes(self, digest: Digest, size: int, limit: int = 16 << 20) -> bytes:
        path = self.store.blob_path(digest)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found in {self.display}") from None
        if Digest.of(data, digest.algorithm) != digest:
            raise DigestMismatch(f"blob {digest} in {self.display} does not match its digest")
        return data

    async def fetch_blob(self, digest: Digest, size: int, dest: Path, progress: Progress) -> None:
        path = self.local_blob(digest)
        if path is None:
            raise NotFound(f"blob {digest} not found in {self.display}")
        progress(ProgressEvent("start", digest, size, where=self.display))
        try:
            await asyncio.to_thread(_sync_copy_verified, path, dest, digest, size)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise
        progress(ProgressEvent("advance", digest, size, amount=size))
        progress(ProgressEvent("done", digest, size, outcome="written", where=self.display))

    def _temp_path(self) -> Path:
        """A fresh temporary file inside the layout, to be adopted with `_adopt`."""
        folder = self.root / "blobs" / ".tmp"
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder)
        os.close(fd)
        return Path(name)

    def _adopt(self, tmp: Path, digest: Digest) -> None:
        """Move a verified temporary file into place as the blob `digest`."""
        dest = self.store.blob_path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        with contextlib.suppress(OSError):
            (self.root / "blobs" / ".tmp").rmdir()

    def _present(self, digest: Digest, size: int, progress: Progress) -> bool:
        dest = self.store.blob_path(digest)
        if dest.exists() and (size < 0 or dest.stat().st_size == size):
            progress(ProgressEvent("done", digest, size, outcome="skipped", where=self.display))
            return True
        return False

    async def receive_blob(
        self, digest: Digest, size: int, src: Repository, progress: Progress
    ) -> str | None:
        if self._present(digest, size, progress):
            return "skipped"
        local = src.local_blob(digest)
        if local is not None:
            return await self.push_blob(digest, size, local, progress)
        tmp = self._temp_path()
        try:
            await src.fetch_blob(digest, size, tmp, progress)
            self._adopt(tmp, digest)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return "downloaded"

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
        # A layout always looks (`check` saves requests to a registry, not a file's stat).
        if self._present(digest, size, progress):
            return "skipped"
        if not isinstance(source, bytes | Path):
            source = await source()
        progress(ProgressEvent("start", digest, size, where=self.display))
        tmp = self._temp_path()
        try:
            if isinstance(source, bytes):
                if Digest.of(source, digest.algorithm) != digest or len(source) != size:
                    raise DigestMismatch(f"content does not match digest {digest}")
                await asyncio.to_thread(tmp.write_bytes, source)
            else:
                await asyncio.to_thread(_sync_copy_verified, source, tmp, digest, size)
            self._adopt(tmp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        progress(ProgressEvent("advance", digest, size, amount=size))
        progress(ProgressEvent("done", digest, size, outcome="written", where=self.display))
        return "written"
