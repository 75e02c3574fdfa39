"""Content digests (`algorithm:encoded`), as the image spec defines them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

# The grammar of the image spec (descriptor.md, "Digests").
_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
# Registered algorithms and their encoded form.
_ENCODED = {
    "sha256": re.compile(r"^[a-f0-9]{64}\Z"),
    "sha512": re.compile(r"^[a-f0-9]{128}\Z"),
}
ALGORITHMS = tuple(_ENCODED)
CANONICAL = "sha256"


class DigestError(ValueError):
    """A digest that is malformed or of an unsupported algorithm; the message says which."""


class Hasher(Protocol):
    """What hashlib's objects offer and we use."""

    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...
    def copy(self) -> Hasher: ...


@dataclass(frozen=True, order=True)
class Digest:
    """A validated digest of a registered algorithm."""

    algorithm: str
    encoded: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.encoded}"

    @classmethod
    def parse(cls, value: str) -> Digest:
        """Parse `value`, raising `DigestError` when it is malformed or unsupported."""
        if len(value) > 256 or not _GRAMMAR.match(value):
            raise DigestError(f"invalid digest {value[:300]!r}")
        algorithm, encoded = value.split(":", 1)
        if not _ENCODED[check_algorithm(algorithm)].match(encoded):
            raise DigestError(f"invalid {algorithm} digest {value!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = CANONICAL) -> Digest:
        """The digest of `data`."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    @staticmethod
    def looks_like(value: str) -> bool:
        """Whether `value` is meant as a digest rather than a tag (it has a colon)."""
        return ":" in value


def check_algorithm(algorithm: str) -> str:
    """`algorithm` when it is registered; raises `DigestError` otherwise."""
    if algorithm not in _ENCODED:
        raise DigestError(
            f"unsupported digest algorithm {algorithm[:100]!r} (supported: {', '.join(ALGORITHMS)})"
        )
    return algorithm


def new_hasher(algorithm: str = CANONICAL) -> Hasher:
    """A fresh hasher for a registered algorithm."""
    h: Hasher = hashlib.new(check_algorithm(algorithm))
    return h
