"""Operator commands on a registry's data: `ocinest gc` and `ocinest fsck`. They open the
stores directly and run while `ocinest serve` keeps serving."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from ocinest.registry import fsck, gc
from ocinest.registry.config import ConfigError, load_config, parse_duration
from ocinest.registry.state import Registry

T = TypeVar("T")

data_option = click.option(
    "--data",
    type=click.Path(path_type=Path, file_okay=False),
    help="Data folder [env OCINEST_DATA].",
)
config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The server's YAML configuration [env OCINEST_CONFIG].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _run(data: Path | None, config_file: Path | None, job: Callable[[Registry], Awaitable[T]]) -> T:
    try:
        config = load_config(config_file, data=data)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if config.metadata == "sqlite" and not (config.data / "meta.db").exists():
        raise click.ClickException(f"no registry data in {config.data.resolve()}")

    async def main() -> T:
        reg = Registry.open(config)
        try:
            return await job(reg)
        finally:
            await reg.close()

    try:
        return asyncio.run(main())
    except ConfigError as exc:  # e.g. a store whose extra is not installed
        raise click.ClickException(str(exc)) from None


@click.command("gc")
@data_option
@config_option
@click.option("--dry-run", is_flag=True, help="Report what would go, with sizes; delete nothing.")
@click.option("--delete-untagged", is_flag=True, help="Also delete manifests no tag reaches.")
@click.option("--grace", default=None, help="Keep what is younger than this [default 1h].")
@json_option
def gc_command(
    data: Path | None,
    config_file: Path | None,
    dry_run: bool,
    delete_untagged: bool,
    grace: str | None,
    as_json: bool,
) -> None:
    """Delete unreachable content while the registry keeps serving; first, the tags the
    configuration's retention rules do not keep."""
    try:
        grace_seconds = None if grace is None else parse_duration(grace)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grace") from None

    async def job(reg: Registry) -> gc.GCReport:
        window = reg.config.gc_grace if grace_seconds is None else grace_seconds
        with gc.exclusive(reg) as mine:
            if not mine:
                raise click.ClickException("another garbage collection is running")
            return await gc.collect(
                reg, delete_untagged=delete_untagged, grace=window, dry_run=dry_run
            )

    report = _run(data, config_file, job)
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    for tag in report.tags:
        click.echo(f"tag {tag.repository}:{tag.name} {tag.digest}")
    for repository, digest, size in report.manifests:
        click.echo(f"manifest {repository}@{digest} {size}")
    for digest, size in report.blobs:
        click.echo(f"blob {digest} {size}")
    click.echo(report.summary())


@click.command("fsck")
@data_option
@config_option
@click.option("--repair", is_flag=True, help="Fix what can be fixed from what is on disk.")
@json_option
def fsck_command(data: Path | None, config_file: Path | None, repair: bool, as_json: bool) -> None:
    """Verify every blob and manifest against the stores; exit 1 when not clean."""
    report = _run(data, config_file, lambda reg: fsck.check(reg, repair=repair))
    if as_json:
        click.echo(json.dumps({**report.__dict__, "clean": report.clean}))
    else:
        click.echo("\n".join(report.lines()))
    sys.exit(0 if report.clean else 1)
