"""``enrolstream lmb serve``, ``mapping`` and ``snapshot``: Banner's LMB as a source."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from cdc.errors import CdcError
from connectors.moodle.errors import MoodleError
from enrolstream.cli.capture import describe
from enrolstream.cli.context import CONFIG_ERROR_EXIT, require_bootstrap, settings_of
from enrolstream.signals import stop_on_signals
from enrolstream.wiring.lmb import generate_mapping, run_lmb_serve, run_lmb_snapshot
from enrolstream.wiring.operations import snapshot_textfile
from lmb.errors import EndpointRefused, LmbError
from lmb.terms import NotBannerId, banner_term
from schemas.events import TermKey

lmb_app = typer.Typer(
    help="Banner's Luminis Message Broker (IMS Enterprise 1.1) as a source.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``lmb`` group to the root command."""
    app.add_typer(lmb_app, name="lmb")


@lmb_app.command("serve")
def serve(ctx: typer.Context) -> None:
    """Receive LMB's POSTs and publish them as enrolment events until SIGTERM.

    Refuses to start (exit 2) without lmb.username and lmb.password, and off
    loopback without TLS. Waits for Kafka at start-up, with backoff.
    """
    config = settings_of(ctx)
    bootstrap = require_bootstrap(config, "lmb serve")

    async def run() -> None:
        async with stop_on_signals() as stop:
            await run_lmb_serve(config, bootstrap, stop=stop)

    try:
        asyncio.run(run())
    except EndpointRefused as exc:
        typer.echo(f"lmb serve cannot start: {exc}", err=True)
        raise typer.Exit(CONFIG_ERROR_EXIT) from None
    except LmbError as exc:
        typer.echo(f"lmb serve failed: {exc}", err=True)
        raise typer.Exit(1) from None


@lmb_app.command("mapping")
def mapping(
    ctx: typer.Context,
    term: Annotated[str, typer.Option("--term", help="Banner term code, e.g. 201510")],
    output: Annotated[
        Path | None,
        typer.Option("--output", help="write the mapping file here (else stdout)"),
    ] = None,
) -> None:
    """Generate a Banner term's mapping from the group messages LMB sent.

    Sections and cross-lists (one Moodle course per cross-list, fed by every
    member CRN) are matched to Moodle courses by idnumber (the section's or the
    cross-list's sourcedid). Those without a Moodle course are listed (exit 1).
    """
    config = settings_of(ctx)
    try:
        label = banner_term(term).label()
    except NotBannerId as exc:
        raise typer.BadParameter(str(exc), param_hint="--term") from None
    bootstrap = require_bootstrap(config, "lmb mapping")
    try:
        entries, missing = asyncio.run(generate_mapping(config, bootstrap, term))
    except (LmbError, MoodleError) as exc:
        typer.echo(f"lmb mapping failed: {exc}", err=True)
        raise typer.Exit(1) from None
    text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(
            f"{len(entries)} Moodle courses mapped for term {label}: {output} "
            f'(settings: consumer.mappings."{label}" = "{output}")',
            err=True,
        )
    for unit in missing:
        crns = ", ".join(unit.crns)
        typer.echo(
            f"no Moodle course has idnumber {unit.idnumber} (CRNs {crns}): "
            "create it, then generate again",
            err=True,
        )
    if missing:
        raise typer.Exit(1)


def parse_term(value: str) -> TermKey:
    """A Banner term code (``201510``) or a label (``2015/10``); ``ValueError`` otherwise."""
    if "/" in value:
        return TermKey.parse(value)
    return banner_term(value)


@lmb_app.command("snapshot")
def snapshot(
    ctx: typer.Context,
    term: Annotated[
        list[str] | None,
        typer.Option(
            "--term",
            help="Banner term code (201510) or 2015/10, repeatable; default: the "
            "terms consumer.mappings names, else every term in the state",
        ),
    ] = None,
) -> None:
    """Publish every person's LMB state as one snapshot for ``enrolstream reconcile``.

    Reads the LMB state topic whole (as ``lmb serve`` does at start-up) and
    publishes one snapshot event per person and term between begin/end markers
    on the snapshot topic, as ``enrolstream snapshot`` does for PowerCampus.
    Exit 1 with one line when the state topic is missing, empty or unreadable.
    """
    config = settings_of(ctx)
    try:
        terms = [parse_term(value) for value in term or []]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--term") from None
    bootstrap = require_bootstrap(config, "lmb snapshot")
    try:
        end = asyncio.run(run_lmb_snapshot(config, bootstrap, terms=terms))
    except (LmbError, CdcError) as exc:
        typer.echo(f"lmb snapshot failed: {exc}", err=True)
        raise typer.Exit(1) from None
    snapshot_textfile(config, end)
    typer.echo(describe(end))
