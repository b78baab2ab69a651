"""``enrolstream source …``: inspect the configured PowerCampus change source.

``source check`` runs the start-up checks of ``cdc/sqlserver_checks.py`` against
the configured SQL Server (driver installed, login, database reachable, change
tracking on for the database and the table, snapshot isolation allowed, VIEW
CHANGE TRACKING granted, the TranscriptDetailId key) and prints one line: OK
with the versions, or what is wrong and what to do. Exit code 1 on failure,
never a traceback.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from cdc.errors import SourceError, SourceMisconfigured

if TYPE_CHECKING:
    from enrolstream.settings import SourceSettings


def register(app: typer.Typer) -> None:
    """Add the ``source`` group to the root command."""
    source_app = typer.Typer(
        help="The PowerCampus change source.", no_args_is_help=True
    )
    app.add_typer(source_app, name="source")

    @source_app.command("check")
    def check() -> None:
        """Check the configured source is usable; print one line, exit 1 if not."""
        from enrolstream.cli import settings  # noqa: PLC0415 - set by the root callback

        source = settings().source
        try:
            line = asyncio.run(check_source(source))
        except SourceError as exc:
            typer.echo(f"source check failed ({source.kind}): {exc}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(line)


async def check_source(source: SourceSettings) -> str:
    """The one-line OK report for ``source``; raises ``SourceError`` when unusable."""
    if source.kind == "sqlserver":
        return await _check_sqlserver(source)
    return await _check_sandbox(source)


async def _check_sqlserver(source: SourceSettings) -> str:
    from cdc.sqlserver import SqlServerChangeSource  # noqa: PLC0415 - imports pyodbc

    settings = source.sqlserver
    change_source = SqlServerChangeSource(settings, name=source.name)
    try:
        report = await change_source.open()
    finally:
        await change_source.close()
    return (
        f"source OK: sqlserver {settings.server}:{settings.port}/{report.database} "
        f"current_version={report.current_version} "
        f"min_valid_version={report.min_valid_version} "
        f"snapshot_isolation={report.snapshot_isolation}"
    )


async def _check_sandbox(source: SourceSettings) -> str:
    from sandbox.powercampus.source import SandboxChangeSource  # noqa: PLC0415

    path = source.sandbox.path
    if not path.is_file():
        raise SourceMisconfigured(
            f"no PowerCampus sandbox at {path}: create one with `enrolstream sandbox "
            "init` (and `enrolstream sandbox seed`), or set source.sandbox.path"
        )
    sandbox_source = SandboxChangeSource(path, name=source.name)
    try:
        snapshot = await sandbox_source.read_snapshot(())
        min_valid = await sandbox_source.min_valid_version()
    finally:
        await sandbox_source.close()
    return (
        f"source OK: sandbox {source.sandbox.path} "
        f"current_version={snapshot.version} min_valid_version={min_valid}"
    )
