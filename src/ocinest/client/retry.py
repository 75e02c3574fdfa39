"""The client's one retry policy: which failures are temporary, how long to wait between
attempts, and the budget of attempts one operation (a request, a whole blob transfer) may
spend."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import aiohttp

from .errors import ClientError, NetworkError, RegistryError

# Failures of a connection that the same request may get past when tried again.
TEMPORARY_ERRORS = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientOSError,
    asyncio.TimeoutError,
)
# Answers that a registry gives when it is busy or briefly broken.
TEMPORARY_STATUSES = frozenset({429, 500, 502, 503, 504})


def describe(exc: BaseException) -> str:
    """A temporary connection failure in a few words."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc}"
    return f"connection dropped ({type(exc).__name__}: {exc})".replace("\n", " ")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 4  # attempts after the first, per operation
    backoff: float = 0.2  # seconds before the first retry; doubles, with jitter
    max_backoff: float = 5.0

    @staticmethod
    def temporary(exc: ClientError) -> bool:
        """Whether an operation that failed with `exc` may succeed when tried again."""
        if isinstance(exc, RegistryError):
            return exc.status in TEMPORARY_STATUSES
        return isinstance(exc, NetworkError)

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `retry` (1, 2, …), honouring `Retry-After`."""
        delay: float = self.backoff * 2.0 ** (retry - 1)
        if retry_after and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        jitter: float = 0.75 + random.random() / 2
        return min(delay, self.max_backoff) * jitter

    def budget(self) -> Budget:
        return Budget(self)


class Budget:
    """The retries left to one operation; every layer that retries draws from the same one."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.used = 0

    @property
    def attempts(self) -> int:
        """Attempts made so far (the first one included)."""
        return self.used + 1

    @property
    def left(self) -> bool:
        return self.used < self.policy.retries

    async def wait(self, retry_after: str | None = None) -> bool:
        """Spend one retry, waiting first; False (and no wait) when none is left."""
        if not self.left:
            return False
        self.used += 1
        await asyncio.sleep(self.policy.delay(self.used, retry_after))
        return True
