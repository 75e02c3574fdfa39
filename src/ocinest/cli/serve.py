"""`ocinest serve`: run the registry."""

from __future__ import annotations

from pathlib import Path

import click

from ocinest.registry.config import ConfigError, load_config
from ocinest.registry.server import configure_logging, serve


@click.command("serve")
@click.option("--addr", help="HOST:PORT to listen on [env OCINEST_ADDR; default 127.0.0.1:5000].")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Data folder [env OCINEST_DATA; default ./ocinest-data].",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML configuration file [env OCINEST_CONFIG].",
)
@click.option(
    "--workers", type=int, help="Processes sharing the port [env OCINEST_WORKERS; default 1]."
)
@click.option(
    "--access-log/--no-access-log", default=None, help="JSON access log on stderr [default on]."
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option(
    "--shutdown-grace",
    metavar="DURATION",
    help="On SIGTERM/SIGINT, how long requests in flight may finish [default 10s].",
)
@click.option(
    "--allow-sparse/--no-allow-sparse",
    default=None,
    help="Accept manifests whose non-nested descriptors were never pushed [default off].",
)
@click.option(
    "--htpasswd",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Basic auth: an htpasswd file of bcrypt hashes.",
)
@click.option(
    "--policy",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Who may pull, push and delete where (YAML).",
)
@click.option(
    "--token-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Token auth: a private key (PEM, EC P-256 or RSA) for the built-in issuer at /auth/token.",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TLS certificate chain (PEM).",
)
@click.option(
    "--tls-key", type=click.Path(path_type=Path, dir_okay=False), help="TLS private key (PEM)."
)
def serve_command(
    addr: str | None,
    data: Path | None,
    config_file: Path | None,
    workers: int | None,
    access_log: bool | None,
    log_level: str | None,
    shutdown_grace: str | None,
    allow_sparse: bool | None,
    htpasswd: Path | None,
    policy: Path | None,
    token_key: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Run the registry."""
    try:
        config = load_config(
            config_file,
            addr=addr,
            data=data,
            workers=workers,
            access_log=access_log,
            log_level=log_level,
            shutdown_grace=shutdown_grace,
            allow_sparse=allow_sparse,
            htpasswd=htpasswd,
            policy=policy,
            token_key=token_key,
            tls_cert=tls_cert,
            tls_key=tls_key,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    configure_logging(config.log_level)
    try:
        serve(config)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve on {config.addr}: {exc.strerror or exc}"
        ) from None
