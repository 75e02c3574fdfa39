"""The client's one retry policy: which failures are temporary, the backoff between attempts,
and one budget per operation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from ocinest.client import (
    AuthError,
    Client,
    NetworkError,
    Options,
    RegistryError,
    parse_reference,
    pull,
    push_files,
)
from ocinest.client.retry import RetryPolicy
from tests.conftest import Server
from tests.manifests import sha256

from .helpers import arun
from .servers import CountingProxy, FaultyRegistry


def test_temporary_failures() -> None:
    policy = RetryPolicy()
    assert policy.temporary(NetworkError("connection dropped"))
    for status in (429, 500, 502, 503, 504):
        assert policy.temporary(RegistryError("busy", status=status))
    for status in (400, 401, 403, 404, 409):
        assert not policy.temporary(RegistryError("refused", status=status))
    assert not policy.temporary(AuthError("wrong password"))


def test_backoff_doubles_honours_retry_after_and_is_capped() -> None:
    policy = RetryPolicy(retries=10, backoff=0.2, max_backoff=5.0)
    for retry, base in ((1, 0.2), (2, 0.4), (3, 0.8)):
        assert base * 0.75 <= policy.delay(retry) <= base * 1.25
    assert 3 * 0.75 <= policy.delay(1, "3") <= 3 * 1.25  # Retry-After in seconds
    assert policy.delay(10) <= 5.0 * 1.25
    assert policy.delay(1, "3600") <= 5.0 * 1.25


def test_a_budget_is_spent_once() -> None:
    budget = RetryPolicy(retries=2, backoff=0.0).budget()

    async def spend() -> list[bool]:
        return [await budget.wait() for _ in range(4)]

    assert asyncio.run(spend()) == [True, True, False, False]
    assert budget.attempts == 3 and not budget.left


@pytest.mark.parametrize(("retries", "succeeds"), [(3, True), (2, False)])
def test_503s_within_the_budget_are_retried_beyond_it_reported(
    tmp_path: Path, retries: int, succeeds: bool
) -> None:
    with FaultyRegistry(unavailable=3) as reg:

        async def go() -> object:
            async with Client(Options(backoff=0.01, retries=retries)) as client:
                return await pull(client, parse_reference(f"{reg.host}/repo:v1"), tmp_path / "l")

        if succeeds:
            arun(go())
            assert len(reg.requests) > 4  # three refused, then the pull
        else:
            with pytest.raises(RegistryError) as caught:
                arun(go())
            assert caught.value.status == 503 and "UNAVAILABLE" in str(caught.value)
            assert len(reg.requests) == 3  # the first attempt and two retries


@pytest.mark.parametrize(("retries", "succeeds"), [(3, True), (2, False)])
def test_an_upload_starts_over_within_the_same_budget(
    server: Server, tmp_path: Path, retries: int, succeeds: bool
) -> None:
    """A refused closing PUT starts the upload over in a new session, as many times as
    `Options.retries` allows (no budget of its own)."""
    f = tmp_path / "f.bin"
    f.write_bytes(b"retried upload")
    with CountingProxy(server.url, refuse_puts=3) as proxy:

        async def go() -> object:
            async with Client(Options(backoff=0.01, retries=retries)) as client:
                ref = parse_reference(f"{proxy.host}/retry/files:v1")
                return await push_files(client, ref, [(f, None)])

        if succeeds:
            arun(go())
            layer = sha256(f.read_bytes())
            got = httpx.get(f"{server.url}/v2/retry/files/blobs/{layer}", follow_redirects=True)
            assert got.content == f.read_bytes()
            assert proxy.counts.requests["POST upload"] == 2 * 4  # two blobs, four sessions each
        else:
            with pytest.raises(RegistryError) as caught:
                arun(go())
            assert caught.value.status == 503
