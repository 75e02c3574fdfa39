"""Running the registry: one process, or `workers` processes sharing the port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import signal
import ssl
import sys
import time
import urllib.parse
from pathlib import Path

from aiohttp import web

from ocinest.registry.app import create_app
from ocinest.registry.auth import Auth
from ocinest.registry.config import Config, ConfigError
from ocinest.registry.observability import FIELDS, JSONFormatter
from ocinest.registry.policy import PolicyError
from ocinest.registry.protocol import Runner
from ocinest.registry.state import Registry

log = logging.getLogger("ocinest.registry")


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler])


MASK = "***"
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """A PostgreSQL connection string without its password (URL or key=value form)."""
    url = urllib.parse.urlsplit(dsn)
    if url.scheme and url.password is not None:
        user = urllib.parse.quote(url.username or "", safe="")
        host = url.netloc.rpartition("@")[2]
        dsn = url._replace(netloc=f"{user}:{MASK}@{host}").geturl()
    return _DSN_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn)


def effective(config: Config) -> dict[str, object]:
    """The configuration as the start-up line logs it, secrets masked."""
    shown: dict[str, object] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is not None and f.name == "s3_secret_key":
            value = MASK
        elif value is not None and f.name == "postgres_dsn":
            value = mask_dsn(value)
        elif isinstance(value, Path):
            value = str(value)
        elif not isinstance(value, str | int | float | bool | None):
            value = repr(value)
        shown[f.name] = value
    return shown


def _tls(config: Config) -> ssl.SSLContext | None:
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


def scheme(config: Config) -> str:
    return "https" if config.tls_cert else "http"


async def _run(config: Config, reuse_port: bool, announce: bool) -> None:
    runner = Runner(create_app(config), config)
    await runner.setup()
    site = web.TCPSite(
        runner,
        config.host,
        config.port,
        reuse_port=reuse_port,
        backlog=1024,
        ssl_context=_tls(config),
    )
    await site.start()
    if announce:
        host, port = runner.addresses[0][:2]
        log.info(
            "ocinest listening on %s://%s:%s (%d worker%s), data in %s",
            scheme(config),
            host,
            port,
            config.workers,
            "" if config.workers == 1 else "s",
            config.data.resolve(),
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    began = loop.time()
    # Refuse new connections, close idle ones, wait out the grace, cut, close the stores.
    await runner.cleanup()
    assert runner.http is not None
    cut = runner.http.cut
    log.info(
        "%s stopped in %.2f s; %s cut at the grace limit (%g s)",
        "ocinest" if announce else f"worker {os.getpid()}",
        loop.time() - began,
        f"{cut} request{'' if cut == 1 else 's'}" if cut else "no request",
        config.shutdown_grace,
    )


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _spawn(config: Config, workers: set[int]) -> None:
    """Fork a worker and record it, with the stop signals held off meanwhile: a signal is
    then never lost between the fork and the record, and never runs the parent's handler in
    a starting child."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            code = 0
            try:
                asyncio.run(_run(config, reuse_port=True, announce=False))
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            os._exit(code)
        workers.add(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


async def _prepare(config: Config) -> None:
    """Open the stores once before any worker: migrations run here, and a store that
    cannot be reached fails the start."""
    await Registry.open(config).close()


def serve(config: Config) -> None:
    """Serve until SIGTERM or SIGINT."""
    try:
        Auth.from_config(config)
    except (PolicyError, ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    if config.token_auth and config.token_realm is None:
        log.warning(
            "token_realm is not set: the Bearer realm in each challenge is built from the "
            "request's Host header (%s://<Host>/auth/token); set token_realm (config file or "
            "OCINEST_TOKEN_REALM) to the token endpoint's public URL",
            scheme(config),
        )
    config.data.mkdir(parents=True, exist_ok=True)
    log.info("effective configuration", extra={FIELDS: {"config": effective(config)}})
    if config.workers == 1:
        asyncio.run(_run(config, reuse_port=False, announce=True))
        return
    asyncio.run(_prepare(config))
    workers: set[int] = set()
    for _ in range(config.workers):
        _spawn(config, workers)
    log.info(
        "ocinest listening on %s://%s (%d workers), data in %s",
        scheme(config),
        config.addr,
        config.workers,
        config.data.resolve(),
    )
    stopping = 0.0  # when the stop began

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = time.monotonic()
            # A worker still running a little after its grace is killed.
            signal.setitimer(signal.ITIMER_REAL, config.shutdown_grace + 1.5)
        for pid in list(workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def kill(signum: int, frame: object) -> None:
        for pid in list(workers):
            log.error("worker %d did not stop in time; killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    for sig in STOP_SIGNALS:
        signal.signal(sig, stop)
    signal.signal(signal.SIGALRM, kill)
    while workers:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        workers.discard(pid)
        if not stopping:
            log.error("worker %d exited (status %d); starting another", pid, status)
            _spawn(config, workers)
    log.info("ocinest stopped in %.2f s (%d workers)", time.monotonic() - stopping, config.workers)
