"""What every handler needs: the stores and the configuration."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiohttp import web

from ocinest.registry.auth import IDENTITY, Access, Auth
from ocinest.registry.config import Config, ConfigError
from ocinest.storage.blobs import BlobStore
from ocinest.storage.filesystem import FilesystemBlobStore
from ocinest.storage.meta import MetaStore
from ocinest.storage.sqlite import SQLiteMetaStore


@dataclass
class Registry:
    config: Config
    blobs: BlobStore
    meta: MetaStore
    auth: Auth
    # CPU-bound work a request causes (building a tree answer) runs here, off the event
    # loop, on one thread: with more, the loop would wait its turn for the GIL behind each of
    # them, and every other request (/healthz among them) with it.
    cpu: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="ocinest-cpu")
    )

    @classmethod
    def open(cls, config: Config) -> Registry:
        """The stores and the authorities the configuration names."""
        data = config.data.resolve()
        # The scale-out stores are imported only when configured: they weigh on every start,
        # and their libraries are extras. Both imports come before any store opens.
        if config.metadata == "postgres":
            try:
                from ocinest.storage.postgres import PostgresMetaStore
            except ImportError as exc:
                raise _missing_extra("metadata: postgres", "postgres", exc) from None
        if config.storage == "s3":
            try:
                from ocinest.storage.s3 import S3BlobStore
            except ImportError as exc:
                raise _missing_extra("storage: s3", "s3", exc) from None
        meta: MetaStore
        if config.metadata == "postgres":
            assert config.postgres_dsn is not None
            meta = PostgresMetaStore(config.postgres_dsn, timeout=config.backend_timeout)
        else:
            meta = SQLiteMetaStore(data / "meta.db")
        blobs: BlobStore
        if config.storage == "s3":
            assert config.s3_bucket is not None
            blobs = S3BlobStore(
                config.s3_bucket,
                endpoint=config.s3_endpoint,
                region=config.s3_region,
                access_key=config.s3_access_key,
                secret_key=config.s3_secret_key,
                prefix=config.s3_prefix,
                part_size=config.s3_part_size,
                redirect=config.s3_redirect,
                timeout=config.backend_timeout,
            )
        else:
            blobs = FilesystemBlobStore(data)
        return cls(config, blobs, meta, Auth.from_config(config))

    async def close(self) -> None:
        self.cpu.shutdown(wait=False, cancel_futures=True)
        await self.meta.close()
        self.blobs.close()


def _missing_extra(setting: str, extra: str, exc: ImportError) -> ConfigError:
    return ConfigError(f"{setting} needs the {extra} extra: pip install 'ocinest[{extra}]' ({exc})")


REGISTRY = web.AppKey("registry", Registry)


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def access(request: web.Request) -> Access:
    return Access(request.app[REGISTRY].auth, request[IDENTITY])
