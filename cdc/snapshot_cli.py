"""``enrolstream snapshot``: publish the full state of some terms on the snapshot topic.

Terms, in order of preference: ``--term YEAR/TERM`` (repeatable), the configured
live terms (``poller.live_terms``), else the terms whose ACADEMICCALENDAR dates
include today. Prints the snapshot id, the change-tracking version and the counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import date
from typing import Annotated

import typer

from cdc.errors import CdcError
from enrolstream.settings import Settings
from schemas.events import TermKey
from schemas.snapshot import SnapshotMarker


def register(app: typer.Typer) -> None:
    """Add ``snapshot`` to the root command."""
    app.command("snapshot")(snapshot)


def snapshot(
    term: Annotated[
        list[str] | None,
        typer.Option(
            "--term",
            help="YEAR/TERM, e.g. 2021/Winter (repeatable); default: the live terms",
        ),
    ] = None,
) -> None:
    """Publish the enrolment state of the terms as one snapshot, bracketed by markers."""
    from cdc.poller import parse_terms  # noqa: PLC0415
    from enrolstream.cli import require_bootstrap, settings  # noqa: PLC0415

    config = settings()
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
    typer.echo(describe(end))


def describe(end: SnapshotMarker) -> str:
    """The one-line report of a published snapshot."""
    terms = ", ".join(term.label() for term in end.terms)
    return (
        f"snapshot {end.snapshot_id}: version {end.state_version}, terms {terms}: "
        f"{end.events} events, {end.persons} persons, "
        f"{end.registrations} registrations"
    )


async def run_snapshot(
    config: Settings,
    bootstrap_servers: str,
    *,
    terms: Sequence[TermKey] = (),
    today: Callable[[], date] = date.today,
) -> SnapshotMarker:
    """Wire source and publisher, choose the terms, publish; returns the end marker."""
    from cdc.kafka import (  # noqa: PLC0415
        KafkaEventPublisher,
        KafkaSnapshotSink,
        ensure_topics,
    )
    from cdc.poller import parse_terms  # noqa: PLC0415
    from cdc.snapshot import publish_snapshot  # noqa: PLC0415
    from cdc.wiring import build_source  # noqa: PLC0415
    from enrolstream.kafka_options import client_options  # noqa: PLC0415

    kafka = config.kafka
    options = client_options(kafka, bootstrap_servers)
    await ensure_topics(
        options,
        [kafka.snapshot_topic],
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
    )
    source = build_source(config.source)
    try:
        chosen = list(terms) or parse_terms(config.poller.live_terms)
        if not chosen:
            chosen = list(await source.live_terms(today()))
        if not chosen:
            raise ValueError(
                "no live term today in ACADEMICCALENDAR and none configured: "
                "name one with --term YEAR/TERM"
            )
        async with KafkaEventPublisher(
            options,
            kafka.snapshot_topic,
            enable_idempotence=kafka.enable_idempotence,
            ack_timeout_s=kafka.request_timeout_s,
        ) as publisher:
            return await publish_snapshot(
                source, KafkaSnapshotSink(publisher), terms=chosen
            )
    finally:
        await source.close()
