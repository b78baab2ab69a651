"""``enrolstream status``, ``parked list``, ``ledger show`` and ``reprocess``.

The status page's views on the command line: the at-a-glance block (text or
``--json``), who is parked and why, what the ownership ledger holds, and the
page's reprocess action.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer

from cdc.errors import CdcError
from consumers.errors import ConsumerError
from enrolstream.cli.context import require_bootstrap, settings_of
from enrolstream.cli.reconcile import ledger_app
from enrolstream.wiring.capture import build_source
from enrolstream.wiring.ledger_view import read_ledger
from enrolstream.wiring.reprocess import run_reprocess
from enrolstream.wiring.status import gather_status, parked_rows, read_parked
from operations.status import render_text

__all__ = ["register"]

parked_app = typer.Typer(
    help="Persons waiting for a Moodle account.", no_args_is_help=True
)
JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of text")]


def register(app: typer.Typer) -> None:
    """Add ``status``, ``parked``, ``reprocess`` and ``ledger show``."""
    app.command("status")(status)
    app.command("reprocess")(reprocess)
    app.add_typer(parked_app, name="parked")
    ledger_app.command("show")(ledger_show)


def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The pipeline at a glance: versions, last change, lag, parked, dead letters, alarms."""
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "status")

    async def run() -> str:
        source = build_source(config.source)
        try:
            found = await gather_status(config, bootstrap, source=source)
        finally:
            await source.close()
        if as_json:
            return json.dumps(found.to_json(), indent=2)
        return render_text(found).rstrip("\n")

    typer.echo(asyncio.run(run()))


@parked_app.command("list")
def parked_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Every parked person-term with the reason, since when, and the tries so far."""
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "parked list")
    try:
        rows = parked_rows(asyncio.run(read_parked(config, bootstrap)))
    except ConsumerError as exc:
        typer.echo(f"parked list failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for row in rows:
        if as_json:
            typer.echo(json.dumps({**asdict(row), "since": row.since.isoformat()}))
        else:
            typer.echo(
                f"{row.people_code_id} {row.term}  since {row.since:%Y-%m-%d %H:%M} "
                f"({row.attempts} tries): {row.reason}"
            )
    typer.echo(f"{len(rows)} parked", err=True)


def ledger_show(
    ctx: typer.Context,
    person: Annotated[str | None, typer.Option(help="PEOPLE_CODE_ID")] = None,
    course: Annotated[str | None, typer.Option(help="Moodle course shortname")] = None,
    as_json: JsonOption = False,
) -> None:
    """What the ownership ledger holds: every entry, or one person's or course's."""
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "ledger show")
    try:
        rows = asyncio.run(read_ledger(config, bootstrap, person=person, course=course))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except ConsumerError as exc:
        typer.echo(f"ledger show failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for row in rows:
        if as_json:
            typer.echo(json.dumps(asdict(row)))
            continue
        flags = ("" if row.owned else " not ours") + (
            " UNCERTAIN (read back before the next decision)" if row.uncertain else ""
        )
        typer.echo(
            f"{row.course} user {row.userid}: {row.status}, {row.role}, "
            f"version {row.state_version}{flags}"
        )
    typer.echo(f"{len(rows)} entries", err=True)


def reprocess(
    ctx: typer.Context,
    person: Annotated[str | None, typer.Option(help="PEOPLE_CODE_ID")] = None,
    course: Annotated[str | None, typer.Option(help="Moodle course shortname")] = None,
) -> None:
    """Decide a person or a course again from what PowerCampus holds now."""
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "reprocess")
    try:
        result = asyncio.run(
            run_reprocess(config, bootstrap, person=person, course=course)
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    except (CdcError, ConsumerError) as exc:
        typer.echo(f"reprocess failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(result.describe(f"person {person}" if person else f"course {course}"))
