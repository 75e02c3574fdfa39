"""Blob transfers of one repository: the resumable download (Range requests after a dropped
connection) and the upload, monolithic (POST then PUT) or in PATCH chunks resumed where the
registry says it stands. Each transfer spends one retry budget, whichever step fails."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from yarl import URL

from ocinest.oci.digest import Digest, new_hasher

from .authorizer import repo_scope
from .base import BlobSource, Progress, ProgressEvent
from .errors import ClientError, DigestMismatch, NetworkError, RegistryError
from .retry import TEMPORARY_ERRORS, Budget, describe
from .transport import Transport

READ_CHUNK = 1 << 16
FILE_CHUNK = 1 << 20
# Answers after which an upload starts over in a new session: the session was lost.
LOST_SESSION = (404, 416)


async def _file_body(
    path: Path, start: int, end: int, on_bytes: Callable[[int], None]
) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(FILE_CHUNK, left))
            if not chunk:
                raise ClientError(f"{path} is shorter than expected")
            left -= len(chunk)
            on_bytes(len(chunk))
            yield chunk


async def _bytes_body(data: memoryview, on_bytes: Callable[[int], None]) -> AsyncIterator[bytes]:
    for i in range(0, len(data), FILE_CHUNK):
        chunk = data[i : i + FILE_CHUNK]
        on_bytes(len(chunk))
        yield bytes(chunk)


def _body(
    source: BlobSource, start: int, end: int, on_bytes: Callable[[int], None]
) -> Callable[[], Any]:
    def make() -> Any:
        if isinstance(source, bytes):
            data = memoryview(source)[start:end]
            if len(data) > FILE_CHUNK:
                return _bytes_body(data, on_bytes)
            # Small: sent in one piece (one write), counted as it is handed over.
            on_bytes(len(data))
            return data
        return _file_body(source, start, end, on_bytes)

    return make


class Transfers:
    """The blob transfers of repository `name` through `transport`."""

    def __init__(self, transport: Transport, name: str, display: str) -> None:
        self.transport = transport
        self.name = name
        self.display = display
        self._pull = [repo_scope(name, "pull")]
        self._push = [repo_scope(name, "pull", "push")]

    # Download

    async def download(self, digest: Digest, size: int, dest: Path, progress: Progress) -> None:
        """Stream the blob into `dest`, verified against size and digest; `dest` removed on
        any failure."""
        try:
            await self._download(digest, size, dest, progress)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise

    async def _download(self, digest: Digest, size: int, dest: Path, progress: Progress) -> None:
        hasher = new_hasher(digest.algorithm)
        written = 0
        budget = self.transport.policy.budget()
        where = f"downloading blob {digest} from {self.display}"
        progress(ProgressEvent("start", digest, size, where=self.display))
        with open(dest, "wb") as f:
            while True:
                headers = {"Range": f"bytes={written}-"} if written else {}
                async with self.transport.call(
                    "GET",
                    f"/v2/{self.name}/blobs/{digest}",
                    ok=(200, 206),
                    not_found=f"blob {digest} not found in {self.display}",
                    fail=f"cannot get blob {digest} from {self.display}",
                    scopes=self._pull,
                    headers=headers,
                    budget=budget,
                    what=f"GET blob {self.display}@{digest}",
                ) as resp:
                    if written and resp.status == 200:
                        # The server ignored the range: start over.
                        f.seek(0)
                        f.truncate()
                        hasher = new_hasher(digest.algorithm)
                        progress(ProgressEvent("advance", digest, size, amount=-written))
                        written = 0
                    try:
                        async for chunk in resp.content.iter_chunked(READ_CHUNK):
                            f.write(chunk)
                            hasher.update(chunk)
                            written += len(chunk)
                            progress(ProgressEvent("advance", digest, size, amount=len(chunk)))
                            if size >= 0 and written > size:
                                raise DigestMismatch(
                                    f"blob {digest} from {self.display} is larger than its "
                                    f"{size} bytes"
                                )
                    except TEMPORARY_ERRORS as exc:
                        if not await budget.wait():
                            raise NetworkError(
                                f"{where}: {describe(exc)} after {written} of {size} bytes "
                                f"({budget.attempts} attempts); nothing was written"
                            ) from None
                        continue
                if size >= 0 and written < size:
                    if not await budget.wait():
                        raise NetworkError(
                            f"{where}: the registry sent {written} of {size} bytes "
                            f"({budget.attempts} attempts); nothing was written"
                        )
                    continue
                break
            f.flush()
            os.fsync(f.fileno())
        if Digest(digest.algorithm, hasher.hexdigest()) != digest:
            raise DigestMismatch(
                f"blob {digest} from {self.display} does not match its digest; nothing was written"
            )
        progress(ProgressEvent("done", digest, size, outcome="downloaded", where=self.display))

    # Upload

    async def upload(
        self,
        digest: Digest,
        size: int,
        source: BlobSource,
        progress: Progress,
        session: URL | None = None,
    ) -> None:
        """Upload into `session` (an upload the registry opened already) or a new one; a
        broken upload starts over in a new session."""
        budget = self.transport.policy.budget()
        progress(ProgressEvent("start", digest, size, where=self.display))
        while True:
            sent = 0

            def on_bytes(n: int) -> None:
                nonlocal sent
                sent += n
                progress(ProgressEvent("advance", digest, size, amount=n))

            try:
                location = session or await self._start(budget)
                session = None
                if size <= self.transport.options.chunk_size:
                    await self._finish(location, digest, _body(source, 0, size, on_bytes), size)
                else:
                    await self._chunked(location, digest, size, source, on_bytes, budget)
            except (NetworkError, RegistryError) as exc:
                if sent:
                    progress(ProgressEvent("advance", digest, size, amount=-sent))
                lost = isinstance(exc, RegistryError) and exc.status in LOST_SESSION
                if not (lost or self.transport.policy.temporary(exc)) or not await budget.wait():
                    raise
                continue
            progress(ProgressEvent("done", digest, size, outcome="uploaded", where=self.display))
            return

    async def _start(self, budget: Budget) -> URL:
        async with self.transport.call(
            "POST",
            f"/v2/{self.name}/blobs/uploads/",
            ok=(202,),
            fail=f"cannot start an upload to {self.display}",
            scopes=self._push,
            budget=budget,
            what=f"start upload to {self.display}",
        ) as resp:
            if not resp.headers.get("Location"):
                raise ClientError(f"{self.display} opened an upload without a Location")
            return resp.url.join(URL(resp.headers["Location"]))

    async def _finish(
        self, location: URL, digest: Digest, body: Callable[[], Any] | None, length: int
    ) -> None:
        """The closing PUT, with the blob's bytes (monolithic) or the last of none."""
        headers = {"Content-Length": str(length)}
        if length:
            headers["Content-Type"] = "application/octet-stream"
        async with self.transport.call(
            "PUT",
            location.update_query(digest=str(digest)),
            ok=(201,),
            fail=f"cannot upload blob {digest} to {self.display}",
            scopes=self._push,
            headers=headers,
            body=body,
            resend=not length,  # only the empty closing PUT of a chunked upload is resent
            what=f"upload blob {digest} to {self.display}",
        ):
            pass

    async def _chunked(
        self,
        location: URL,
        digest: Digest,
        size: int,
        source: BlobSource,
        on_bytes: Callable[[int], None],
        budget: Budget,
    ) -> None:
        chunk = self.transport.options.chunk_size
        offset = 0
        while offset < size:
            end = min(offset + chunk, size)
            try:
                async with self.transport.call(
                    "PATCH",
                    location,
                    ok=(202,),
                    fail=f"cannot upload blob {digest} to {self.display}",
                    scopes=self._push,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(end - offset),
                        "Content-Range": f"{offset}-{end - 1}",
                    },
                    body=_body(source, offset, end, on_bytes),
                    resend=False,
                    what=f"upload chunk of blob {digest} to {self.display}",
                ) as resp:
                    if resp.headers.get("Location"):
                        location = resp.url.join(URL(resp.headers["Location"]))
            except NetworkError:
                if not await budget.wait():
                    raise
                location, offset = await self._status(location, budget)
                continue
            offset = end
        await self._finish(location, digest, None, 0)

    async def _status(self, location: URL, budget: Budget) -> tuple[URL, int]:
        """Where a broken chunked upload stands: (location, bytes the registry holds)."""
        async with self.transport.call(
            "GET",
            location,
            ok=(202, 204),
            fail=f"cannot resume the upload to {self.display}",
            scopes=self._push,
            budget=budget,
            what=f"upload status in {self.display}",
        ) as resp:
            rng = resp.headers.get("Range", "")
            new = resp.headers.get("Location")
        end = rng.rsplit("-", 1)[1] if "-" in rng else ""
        # "0-0" is what registries answer for an empty upload too; chunks are larger.
        held = int(end) + 1 if end.isdigit() and int(end) > 0 else 0
        return (resp.url.join(URL(new)) if new else location), held
