"""``enrolstream poll``, ``snapshot`` and ``source check``: the capture side's commands."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cdc.errors import CdcError, SourceError
from cdc.poller import parse_terms
from enrolstream.cli.context import require_bootstrap, settings_of
from enrolstream.signals import stop_on_signals
from enrolstream.wiring.capture import check_source, run_poller, run_snapshot
from enrolstream.wiring.operations import snapshot_textfile
from schemas.snapshot import SnapshotMarker

source_app = typer.Typer(help="The PowerCampus change source.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``poll``, ``snapshot`` and the ``source`` group to the root command."""
    app.command("poll")(poll)
    app.command("snapshot")(snapshot)
    app.add_typer(source_app, name="source")


def poll(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="run one iteration and exit")
    ] = False,
) -> None:
    """Capture PowerCampus changes and publish them to Kafka until SIGTERM.

    Waits for Kafka at start-up (with backoff, saying so) unless --once.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "poll")

    async def run() -> None:
        async with stop_on_signals() as stop:
            result = await run_poller(config, bootstrap, once=once, stop=stop)
        if result is not None:
            typer.echo(
                f"version {result.from_version} -> {result.to_version}: "
                f"{result.events} events"
            )

    try:
        asyncio.run(run())
    except CdcError as exc:
        typer.echo(f"poll failed: {exc}", err=True)
        raise typer.Exit(1) from None


def snapshot(
    ctx: typer.Context,
    term: Annotated[
        list[str] | None,
        typer.Option(
            "--term",
            help="YEAR/TERM, e.g. 2021/Winter (repeatable); default: the live terms",
        ),
    ] = None,
) -> None:
    """Publish the enrolment state of the terms as one snapshot, bracketed by markers.

    Terms, in order of preference: ``--term YEAR/TERM`` (repeatable), the
    configured live terms (``poller.live_terms``), else the terms whose
    ACADEMICCALENDAR dates include today. Prints the snapshot id, the
    change-tracking version and the counts.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "snapshot")
    try:
        terms = parse_terms(term or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--term") from exc
    try:
        end = asyncio.run(run_snapshot(config, bootstrap, terms=terms))
    except (CdcError, ValueError) as exc:
        typer.echo(f"snapshot failed: {exc}", err=True)
        raise typer.Exit(1) from None
    snapshot_textfile(config, end)
    typer.echo(describe(end))


def describe(end: SnapshotMarker) -> str:
    """The one-line report of a published snapshot."""
    terms = ", ".join(term.label() for term in end.terms)
    return (
        f"snapshot {end.snapshot_id}: version {end.state_version}, terms {terms}: "
        f"{end.events} events, {end.persons} persons, "
        f"{end.registrations} registrations"
    )


@source_app.command("check")
def check(ctx: typer.Context) -> None:
    """Check the configured source is usable; print one line, exit 1 if not.

    For SQL Server: driver installed, login, database reachable, change tracking
    on for the database and the table, snapshot isolation allowed, VIEW CHANGE
    TRACKING granted, the TranscriptDetailId key; OK with the versions, or what
    is wrong and what to do. Never a traceback.
    """
    source = settings_of(ctx).source
    try:
        line = asyncio.run(check_source(source))
    except SourceError as exc:
        typer.echo(f"source check failed ({source.kind}): {exc}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(line)
