"""The nightly reconcile and ``ledger adopt`` wired: snapshot, ledger, Moodle, report.

``reconcile --apply`` and ``ledger adopt`` write the ownership ledger, which the
running consumer holds in memory and would overwrite: while the apply group
(``consumer.group_id``) has live members they refuse (``LiveConsumerRefused``),
before reading anything and again just before the first write. Dry runs only
read and are always allowed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from connectors.kafka import KafkaRecordSink, KafkaTable, read_topic
from connectors.local.files import make_private_directory, write_private_text
from consumers.created_book import CreatedBook
from consumers.decisions import EnrolmentPolicy, desired_enrolments
from consumers.groups import sections_wanted
from consumers.ledger import Ledger
from consumers.mapping import MappingSet
from consumers.reconcile.adopt import AdoptionPlan, adopt
from consumers.reconcile.driver import (
    PersonResolver,
    ProgressTask,
    ReconcileInputs,
    ReconcileMoodle,
    ReconcileResult,
    gather_inputs,
    reconcile,
)
from consumers.reconcile.report import render_report
from consumers.reconcile.snapshot_reader import pick_snapshot
from consumers.section_groups import SectionGroups
from enrolstream.settings import Settings
from enrolstream.wiring.common import (
    ensure_all_topics,
    guard_limits,
    identity_resolver,
    kafka_options,
    open_moodle,
    policy,
    refuse_live_consumer,
)
from enrolstream.wiring.mapping import effective_mapping
from enrolstream.wiring.reconcile_conduit import (
    NOTE_SENT_ONLY,
    SentOnly,
    open_conduit_site,
)

__all__ = ["open_session", "run_adopt", "run_reconcile", "write_report"]

#: Moodle reads retried this many times per course before a course is skipped.
READ_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Session:
    """Everything one reconcile or adopt run holds open."""

    inputs: ReconcileInputs
    moodle: ReconcileMoodle
    resolver: PersonResolver
    ledger: Ledger
    mapping: MappingSet
    policy: EnrolmentPolicy
    #: Said to the reader first (a Conduit site without web services).
    notes: tuple[str, ...] = ()
    #: Section groups of ours (``consumer.section_groups``); None: off.
    groups: SectionGroups | None = None

    async def make_groups(self) -> None:
        """Make the section groups the snapshot's students need (apply only)."""
        if self.groups is None:
            return
        decided = [
            (desired, event)
            for event in self.inputs.snapshot.events
            for desired in desired_enrolments(event, self.mapping, self.policy)
        ]
        await self.groups.ensure(sections_wanted(decided))


@contextlib.asynccontextmanager
async def open_session(
    settings: Settings,
    bootstrap_servers: str,
    snapshot_id: str | None = None,
    progress: ProgressTask | None = None,
) -> AsyncIterator[Session]:
    """Read the mapping, the snapshot, the ledger, identities and rosters; hold the
    Moodle client and the ledger's producer open for the caller."""
    # the files with every published revision in force, as the consumers hold it
    mapping = await effective_mapping(settings, bootstrap_servers)
    kafka = settings.kafka
    options = kafka_options(settings, bootstrap_servers)
    await ensure_all_topics(settings, bootstrap_servers)
    snapshot = pick_snapshot(
        await read_topic(options, kafka.snapshot_topic), snapshot_id
    )
    async with contextlib.AsyncExitStack() as stack:
        moodle: ReconcileMoodle
        resolver: PersonResolver
        notes: tuple[str, ...] = ()
        if settings.consumer.sink == "conduit":
            moodle, resolver = await stack.enter_async_context(
                open_conduit_site(settings, mapping, attempts=READ_ATTEMPTS)
            )
            if not settings.conduit.web_services:
                notes = (NOTE_SENT_ONLY,)
        else:
            client = await stack.enter_async_context(
                open_moodle(settings, attempts=READ_ATTEMPTS)
            )
            moodle, resolver = client, identity_resolver(client, settings)
        sink = await stack.enter_async_context(
            KafkaRecordSink(
                options, kafka.ledger_topic, ack_timeout_s=kafka.request_timeout_s
            )
        )
        ledger = Ledger(KafkaTable(options, kafka.ledger_topic, sink))
        await ledger.load()
        groups = None
        if settings.consumer.section_groups and settings.consumer.sink != "conduit":
            created = CreatedBook(
                KafkaTable(
                    options,
                    kafka.created_topic,
                    await stack.enter_async_context(
                        KafkaRecordSink(options, kafka.created_topic)
                    ),
                )
            )
            await created.load()
            groups = SectionGroups(client, created, settings.consumer.group_name)
        inputs = await gather_inputs(
            moodle,
            resolver,
            snapshot,
            mapping,
            progress=progress,
            attempts=READ_ATTEMPTS,
        )
        yield Session(
            inputs=inputs,
            moodle=moodle,
            resolver=resolver,
            ledger=ledger,
            mapping=mapping,
            policy=policy(settings),
            notes=notes,
            groups=groups,
        )


def _refuse_writes_without_rosters(settings: Settings) -> None:
    if settings.consumer.sink == "conduit" and not settings.conduit.web_services:
        raise SentOnly(NOTE_SENT_ONLY)


async def run_reconcile(
    settings: Settings,
    bootstrap_servers: str,
    *,
    apply: bool = False,
    force: bool = False,
    snapshot_id: str | None = None,
    progress: ProgressTask | None = None,
) -> ReconcileResult:
    """One reconcile run as the command does it, without the report or exit code.

    With ``apply``, ``LiveConsumerRefused`` while ``enrolstream consume`` runs
    (checked before reading and again before the first write).
    """

    async def before_writing() -> None:
        await refuse_live_consumer(settings, bootstrap_servers, "reconcile --apply")

    if apply:
        _refuse_writes_without_rosters(settings)
        await before_writing()
    async with open_session(
        settings, bootstrap_servers, snapshot_id, progress
    ) as session:
        if apply and session.groups is not None:
            await before_writing()
            await session.make_groups()
        result = await reconcile(
            session.inputs,
            mapping=session.mapping,
            policy=session.policy,
            ledger=session.ledger,
            limits=guard_limits(settings),
            resolver=session.resolver,
            moodle=session.moodle,
            apply=apply,
            force=force,
            progress=progress,
            before_writing=before_writing,
            groups=session.groups,
        )
        result.notes.extend(session.notes)
        return result


async def run_adopt(
    settings: Settings,
    bootstrap_servers: str,
    *,
    dry_run: bool = False,
    snapshot_id: str | None = None,
    progress: ProgressTask | None = None,
) -> AdoptionPlan:
    """One ``ledger adopt`` run as the command does it.

    Unless ``dry_run``, ``LiveConsumerRefused`` while ``enrolstream consume``
    runs (checked before reading and again before writing the ledger).
    """

    async def before_writing() -> None:
        await refuse_live_consumer(settings, bootstrap_servers, "ledger adopt")

    _refuse_writes_without_rosters(settings)
    if not dry_run:
        await before_writing()
    async with open_session(
        settings, bootstrap_servers, snapshot_id, progress
    ) as session:
        return await adopt(
            session.inputs,
            session.mapping,
            session.policy,
            session.ledger,
            dry_run=dry_run,
            before_writing=before_writing,
        )


def write_report(directory: Path, result: ReconcileResult) -> list[Path]:
    """Write the report's three files into ``directory``; returns their paths.

    They hold student data: the directory is created 0700, the files 0600 (also
    when an older run left them looser).
    """
    make_private_directory(directory)
    written = []
    for name, text in render_report(result).items():
        path = directory / name
        write_private_text(path, text)
        written.append(path)
    return written
