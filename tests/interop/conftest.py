"""Fixtures for the interop tests: real skopeo, podman and umoci, with private configuration
and storage in each test's temporary folder. The `server` fixture (a live `ocinest serve`)
comes from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_helpers import Podman, Skopeo, new_podman, new_skopeo


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return new_skopeo(tmp_path)


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    with new_podman(tmp_path) as p:
        yield p
