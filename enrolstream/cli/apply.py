"""``enrolstream consume``, ``dlq list|redrive`` and ``parked list``: the apply side's commands."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from consumers.errors import ConsumerError, MappingError, StartupRefused
from enrolstream.cli.context import CONFIG_ERROR_EXIT, require_bootstrap, settings_of
from enrolstream.signals import stop_on_signals
from enrolstream.wiring.apply import (
    read_dead_letters,
    read_parked,
    redrive,
    run_consume,
)

dlq_app = typer.Typer(help="Show and re-queue dead letters.", no_args_is_help=True)
parked_app = typer.Typer(
    help="Show the persons waiting for a Moodle account, and why.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``consume`` and the ``dlq`` and ``parked`` groups to the root command."""
    app.command("consume")(consume)
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(parked_app, name="parked")


def consume(
    ctx: typer.Context,
    until_idle: Annotated[
        bool,
        typer.Option(
            "--until-idle", help="exit once every event read so far is applied"
        ),
    ] = False,
) -> None:
    """Apply enrolment events to Moodle until SIGTERM.

    Waits for Kafka and Moodle at start-up (with backoff, saying so) unless
    --until-idle.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "consume")

    async def run() -> str | None:
        async with stop_on_signals() as stop:
            result = await run_consume(
                config, bootstrap, until_idle=until_idle, stop=stop
            )
            return result.summary

    try:
        summary = asyncio.run(run())
    except (MappingError, StartupRefused) as exc:
        typer.echo(f"start-up refused: {exc}", err=True)
        raise typer.Exit(CONFIG_ERROR_EXIT) from exc
    except ConsumerError as exc:
        typer.echo(f"consume failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if summary is not None:
        typer.echo(summary)


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON record per line")
    ] = False,
) -> None:
    """Show every dead letter with its reason."""
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "dlq list")
    try:
        letters = asyncio.run(read_dead_letters(config, bootstrap))
    except ConsumerError as exc:
        typer.echo(f"dlq list failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for position, letter in letters:
        if as_json:
            record = {"offset": position, **letter.model_dump(mode="json")}
            typer.echo(json.dumps(record))
        else:
            typer.echo(
                f"[{position}] {letter.dead_lettered_at:%Y-%m-%d %H:%M:%S} "
                f"{letter.error_type} key={letter.key}: {letter.reason}"
            )
    typer.echo(f"{len(letters)} dead letters", err=True)


@dlq_app.command("redrive")
def dlq_redrive(
    ctx: typer.Context,
    error_type: Annotated[
        str | None, typer.Option(help="only letters of this error type")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Re-queue dead letters onto the event topic as their person-term's newest state.

    Letters of one person and term become one full-state event built from the
    newest event of that person-term; letters that are not valid events are
    re-queued as they were.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "dlq redrive")
    try:
        count = asyncio.run(
            redrive(config, bootstrap, error_type=error_type, dry_run=dry_run)
        )
    except ConsumerError as exc:
        typer.echo(f"dlq redrive failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{'would re-queue' if dry_run else 're-queued'} {count.events} events "
        f"for {count.letters} dead letters"
    )


@parked_app.command("list")
def parked_list(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON record per line")
    ] = False,
) -> None:
    """Show every parked person-term with the exact reason it waits.

    A person waits while Moodle has no account for them (or two), or while one
    cannot be made (with accounts on: a username or e-mail another account
    holds, no e-mail, Moodle's refusal); it is retried on its own.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "parked list")
    try:
        waiting = asyncio.run(read_parked(config, bootstrap))
    except ConsumerError as exc:
        typer.echo(f"parked list failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for parked in waiting:
        event = parked.event
        if as_json:
            record = {
                "people_code_id": event.people_code_id,
                "term": event.term.label(),
                "reason": parked.reason,
                "parked_at": parked.parked_at.isoformat(),
                "attempts": parked.attempts,
            }
            typer.echo(json.dumps(record))
        else:
            typer.echo(
                f"{event.people_code_id} {event.term.label()} since "
                f"{parked.parked_at:%Y-%m-%d %H:%M:%S} ({parked.attempts} attempts): "
                f"{parked.reason}"
            )
    typer.echo(f"{len(waiting)} parked", err=True)
