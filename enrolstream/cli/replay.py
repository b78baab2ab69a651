"""``enrolstream replay``: re-apply events from a point in time, the start, or offsets.

    enrolstream replay (--since TIME | --from-beginning | --to-offsets FILE)
                       [--group G] [--dry-run] [--no-verify-ledger]

Stop ``enrolstream consume`` first; start it again afterwards to apply. Exit
codes: 0 done, 1 refused or failed (the message says why), 2 bad arguments
or offsets the topic does not have.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from consumers.errors import ConsumerError
from consumers.replay.offsets import (
    FromBeginning,
    InvalidReplayOffsets,
    ReplayStart,
    Since,
    ToOffsets,
    parse_offsets_file,
    parse_since,
)
from enrolstream.cli.context import require_bootstrap, settings_of
from enrolstream.wiring.operations import replay_textfile
from enrolstream.wiring.replay import ReplayReport, replay


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the root command."""
    app.command("replay")(replay_command)


def choose_start(
    since: str | None, from_beginning: bool, to_offsets: Path | None, *, now: datetime
) -> ReplayStart:
    """The one start the options name; ``typer.BadParameter`` for none or several."""
    named = [since is not None, from_beginning, to_offsets is not None]
    if sum(named) != 1:
        raise typer.BadParameter(
            "give exactly one of --since TIME, --from-beginning, --to-offsets FILE"
        )
    if since is not None:
        return Since(parse_since(since, now=now))
    if to_offsets is not None:
        return ToOffsets(parse_offsets_file(to_offsets))
    return FromBeginning()


def replay_command(  # noqa: PLR0917 - typer maps each parameter to an option
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="ISO 8601 time, or a duration ago (30m, 2h, 1d)"),
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="everything the topic holds")
    ] = False,
    to_offsets: Annotated[
        Path | None,
        typer.Option(help='JSON file {"<partition>": offset, ...}'),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="consumer group (default: consumer.group_id)")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="show what would change; commit nothing"),
    ] = False,
    no_verify_ledger: Annotated[
        bool,
        typer.Option(
            "--no-verify-ledger",
            help="skip checking the ledger against Moodle's rosters (every "
            "start checks it: --since from that time, --from-beginning every "
            "entry, --to-offsets from the target records' time)",
        ),
    ] = False,
) -> None:
    """Move the consumer group back so `enrolstream consume` applies events again."""
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "replay")
    try:
        start = choose_start(since, from_beginning, to_offsets, now=datetime.now(UTC))
    except InvalidReplayOffsets as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        report = asyncio.run(
            replay(
                config,
                bootstrap,
                start,
                group=group,
                dry_run=dry_run,
                verify_ledger_first=not no_verify_ledger,
            )
        )
    except InvalidReplayOffsets as exc:
        typer.echo(f"replay: {exc}", err=True)
        raise typer.Exit(2) from None
    except ConsumerError as exc:
        typer.echo(f"replay: {exc}", err=True)
        raise typer.Exit(1) from None
    replay_textfile(
        config,
        events=report.events,
        partitions=sum(1 for move in report.moves if move.events),
        dry_run=report.dry_run,
    )
    for line in summary_lines(report):
        typer.echo(line)


def summary_lines(report: ReplayReport) -> list[str]:
    """The report as the operator reads it."""
    verb = "would move" if report.dry_run else "moved"
    head = "DRY RUN: nothing committed, nothing written. " if report.dry_run else ""
    lines = [f"{head}group {report.group.group_id} on {report.topic}:"]
    lines += [f"note: {note}" for note in report.notes]
    for move in report.moves:
        was = "none" if move.committed is None else str(move.committed)
        lines.append(
            f"  partition {move.partition}: {verb} {was} -> {move.target} "
            f"({move.events} events to replay)"
        )
    lines.append(f"events to replay: {report.events}")
    check = report.ledger_check
    if check is not None:
        since = datetime.fromtimestamp(check.since_ms / 1000, UTC)
        verb = "would correct" if report.dry_run else "corrected"
        which = (
            f"entries written since {since:%Y-%m-%d %H:%M:%S}Z"
            if check.since_ms > 0
            else "entries (the whole ledger)"
        )
        lines.append(
            f"ledger check: {check.examined} {which}, {verb} {len(check.corrections)}"
        )
        lines += [f"  {c.describe()}" for c in check.corrections]
    if report.plan is not None:
        dry = report.plan
        lines.append(
            f"replaying {dry.events} events ({dry.invalid} invalid) would make "
            f"{len(dry.actions)} Moodle changes; {dry.already_in_state} already in "
            f"state; {len(dry.unresolved)} persons not found in Moodle (parked)"
        )
        for planned in dry.actions:
            action = planned.action
            lines.append(
                f"  {action.kind} user {action.userid} in course {action.courseid} "
                f"({planned.decision.desired.people_code_id}: "
                f"{planned.decision.desired.reason})"
            )
        lines += [f"  not found: {person}: {why}" for person, why in dry.unresolved]
    elif not report.dry_run:
        lines.append("start `enrolstream consume` to apply them")
    return lines
