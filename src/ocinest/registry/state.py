"""What every handler needs: the stores and the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ocinest.registry.config import Config
from ocinest.storage.blobs import BlobStore
from ocinest.storage.meta import MetaStore


@dataclass
class Registry:
    config: Config
    blobs: BlobStore
    meta: MetaStore


REGISTRY = web.AppKey("registry", Registry)


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]
