"""The apply side wired: the consumer's parts (``open_runner``) and the dead-letter commands.

``consume`` itself, with its listener and alarm, is ``enrolstream.wiring.consume``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import structlog

from connectors.conduit.accounts import ConduitAccounts
from connectors.kafka import (
    KafkaEventConsumer,
    KafkaMappingFeed,
    KafkaRecordSink,
    KafkaTable,
    read_topic,
)
from connectors.moodle.checks import preflight
from connectors.moodle.client import MoodleClient
from consumers.account_book import AccountBook
from consumers.created_book import CreatedBook
from consumers.dead_letters import (
    RedriveCount,
    count_redrive,
    pending_letters,
    plan_redrive,
    redriven_mark,
)
from consumers.errors import StartupRefused
from consumers.ledger import Ledger
from consumers.live_mapping import LiveMapping, LiveShortnames, MappingFollower
from consumers.mapping import MappingSet, check_mapping, load_mappings
from consumers.outbox import DeferredCommits
from consumers.parked import ParkedEvents
from consumers.ports import EventStream, Identities, MoodleAccounts, MoodleGateway
from consumers.provisioning import Provisioning
from consumers.runner import ApplyRunner
from consumers.section_groups import SectionGroups
from enrolstream.crashpoints import crash_point
from enrolstream.settings import Settings
from enrolstream.wiring.common import (
    account_policy,
    ensure_all_topics,
    identity_resolver,
    kafka_options,
    open_moodle,
    policy,
)
from enrolstream.wiring.conduit import delivering, open_conduit, refuse_unusable
from operations.health import Heartbeat
from operations.metrics import NO_METRICS, Metrics
from schemas.dead_letter import DeadLetter

__all__ = ["open_runner", "read_dead_letters", "redrive"]

log = structlog.get_logger()


#: Allocations between collections of the youngest generation (Python: 700).
_YOUNG_COLLECTION_EVERY = 200_000


def collect_less_often() -> None:
    """Fewer garbage collections in the consumer's process.

    A batch of 2,000 events allocates some 100,000 short-lived objects (parsed
    events, decisions, ledger entries): at Python's default of a young
    collection every 700 allocations, and a full one every 100 of those
    through the whole heap (the ledger), parsing an event cost 47 µs beside a
    large heap, 29 µs with this (measured on the burst's events). At 200,000
    (was 50,000) a batch's objects, freed by reference counting when the batch
    is done, seldom meet a young collection at all: the burst's consumer CPU
    1.30 -> 1.13 s per 10,000 changes (young collections 0.84 -> 0.20 CPU s in
    a ``bench.e2e --only zero`` run). Memory is still freed by reference
    counting at once; only cycles wait a little longer.
    """
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, _YOUNG_COLLECTION_EVERY), middle, old)


@contextlib.asynccontextmanager
async def open_runner(
    settings: Settings,
    bootstrap_servers: str,
    *,
    mapping: MappingSet | None = None,
    stop: asyncio.Event | None = None,
    metrics: Metrics = NO_METRICS,
    heartbeat: Heartbeat | None = None,
) -> AsyncIterator[ApplyRunner]:
    """A ready runner: mapping checked, topics created, Moodle asked, tables loaded.

    Refuses an empty mapping (``MappingError``) unless allowed,
    ``drop_action = "suspend"`` without the companion plugin, and accounts without
    ``user_field = idnumber`` (``StartupRefused``); with ``consumer.sink =
    "conduit"`` decisions go to Conduit's outbox (``enrolstream.wiring.conduit``),
    commits wait for their files, and Moodle is read only with
    ``conduit.web_services``;
    waits while Moodle is down (until ``stop``); warns about sections feeding two
    courses and about mapped courses Moodle lacks or cannot enrol into.
    """
    collect_less_often()
    mapping = mapping or load_mappings(settings.consumer.mappings)
    _refuse_accounts_without_idnumber(settings)
    check_mapping(
        mapping,
        settings.consumer.mappings,
        allow_empty=settings.consumer.allow_empty_mapping,
    )
    kafka = settings.kafka
    options = kafka_options(settings, bootstrap_servers)
    conduit = settings.consumer.sink == "conduit"
    if conduit:
        refuse_unusable(settings)
    await ensure_all_topics(settings, bootstrap_servers)
    async with contextlib.AsyncExitStack() as stack:
        client = None
        if not conduit or settings.conduit.web_services:
            client = await stack.enter_async_context(
                open_moodle(settings, stop=stop, metrics=metrics, reads_only=conduit)
            )
        if not conduit and client is not None:
            await preflight(mapping, client)

        async def sink(topic: str) -> KafkaRecordSink:
            return await stack.enter_async_context(
                KafkaRecordSink(options, topic, ack_timeout_s=kafka.request_timeout_s)
            )

        ledger = Ledger(
            KafkaTable(options, kafka.ledger_topic, await sink(kafka.ledger_topic))
        )
        book = None
        if settings.accounts.enabled and client is not None:
            book = AccountBook(
                KafkaTable(
                    options, kafka.accounts_topic, await sink(kafka.accounts_topic)
                )
            )
            await book.load()
        parked = ParkedEvents(
            KafkaTable(options, kafka.parked_topic, await sink(kafka.parked_topic))
        )
        groups = None
        if settings.consumer.section_groups and client is not None and not conduit:
            groups = await _section_groups(
                settings, client, options, await sink(kafka.created_topic)
            )
        await ledger.load()
        await parked.load()
        follower = MappingFollower(
            await stack.enter_async_context(
                KafkaMappingFeed(options, kafka.mappings_topic)
            ),
            LiveMapping(mapping),
        )
        stream: EventStream = await stack.enter_async_context(
            KafkaEventConsumer(
                options,
                kafka.events_topic,
                settings.consumer.group_id,
                session_timeout_s=settings.consumer.session_timeout_s,
                max_records=settings.consumer.batch_max_rows,
                fetch_max_wait_ms=settings.consumer.fetch_max_wait_ms,
            )
        )
        gateway: MoodleGateway
        identities: Identities
        accounts: MoodleAccounts | None = client
        if conduit:
            parts = await stack.enter_async_context(
                open_conduit(
                    settings,
                    mapping,
                    lookup=identity_resolver(client, settings)
                    if book is not None and client is not None
                    else None,
                    asked_to_create=_asked_to_create(book),
                    shortnames=LiveShortnames(follower.live),
                )
            )
            gateway, identities = parts.gateway, parts.identities
            stream = DeferredCommits(stream, parts.outbox)
            await stack.enter_async_context(delivering(parts.outbox))
            if book is not None and client is not None:
                accounts = ConduitAccounts(client, parts.outbox, parts.format, book)
        else:
            assert client is not None  # noqa: S101 - built above for web services
            gateway, identities = client, identity_resolver(client, settings)
        provisioning = None
        if book is not None and accounts is not None:
            provisioning = Provisioning(
                accounts,
                book,
                account_policy(settings),
                transform=settings.moodle.user_transform,
            )
        runner = ApplyRunner(
            stream=stream,
            moodle=gateway,
            identities=identities,
            mapping=mapping,
            policy=policy(settings),
            ledger=ledger,
            parked=parked,
            dead_letters=await sink(kafka.dead_letter_topic),
            parked_topic=kafka.parked_topic,
            parked_retry_s=settings.consumer.parked_retry_s,
            max_backoff_s=settings.moodle.max_backoff_s,
            crash_point=crash_point,
            late_write_window_s=settings.moodle.late_write_window_s,
            metrics=metrics,
            heartbeat=heartbeat,
            provisioning=provisioning,
            groups=groups,
            mapping_follower=follower,
            mapping_refresh_s=settings.consumer.mapping_refresh_s,
        )
        # The revisions published so far are the mapping in force from the start.
        await runner.refresh_mapping(wait=True)
        yield runner


def _refuse_accounts_without_idnumber(settings: Settings) -> None:
    if settings.accounts.enabled and settings.moodle.user_field != "idnumber":
        raise StartupRefused(
            "accounts.enabled needs moodle.user_field = idnumber: a new account gets "
            "the idnumber the consumer finds people by"
        )


async def _section_groups(
    settings: Settings,
    client: MoodleClient,
    options: dict[str, Any],
    created_sink: KafkaRecordSink,
) -> SectionGroups:
    """The section groups of ours, the created book loaded."""
    topic = settings.kafka.created_topic
    created = CreatedBook(KafkaTable(options, topic, created_sink))
    await created.load()
    return SectionGroups(client, created, settings.consumer.group_name)


def _asked_to_create(book: AccountBook | None) -> Callable[[str], bool]:
    """Whether Conduit was asked (for certain) to create the person's account."""

    def asked(person: str) -> bool:
        entry = book.get(person) if book is not None else None
        return entry is not None and not entry.uncertain

    return asked


async def read_dead_letters(
    settings: Settings, bootstrap_servers: str
) -> list[tuple[str, DeadLetter]]:
    """Dead letters not redriven yet, with their position ``partition:offset``."""
    options = kafka_options(settings, bootstrap_servers)
    return pending_letters(await read_topic(options, settings.kafka.dead_letter_topic))


async def redrive(
    settings: Settings,
    bootstrap_servers: str,
    *,
    error_type: str | None = None,
    positions: Sequence[str] | None = None,
    dry_run: bool = False,
) -> RedriveCount:
    """Re-queue the chosen dead letters (``consumers.dead_letters``).

    Chosen: every letter, or those of ``error_type``, or those at ``positions``
    (``partition:offset``, as ``dlq list`` shows them). Letters without a value are
    never chosen. The event records are acknowledged
    before the letters are marked redriven: a failure in between redrives them
    again next time, which the consumer absorbs (a full-state event is idempotent).
    """
    kafka = settings.kafka
    options = kafka_options(settings, bootstrap_servers)
    chosen = [
        (position, letter)
        for position, letter in await read_dead_letters(settings, bootstrap_servers)
        if letter.value is not None
        and (error_type is None or letter.error_type == error_type)
        and (positions is None or position in positions)
    ]
    letters = [letter for _, letter in chosen]
    if dry_run or not chosen:
        return RedriveCount(letters=len(chosen), events=count_redrive(letters))
    records = plan_redrive(letters, await read_topic(options, kafka.events_topic))
    async with KafkaRecordSink(options, kafka.events_topic) as events:
        await events.append(records)
    async with KafkaRecordSink(options, kafka.dead_letter_topic) as sink:
        await sink.append([redriven_mark(position for position, _ in chosen)])
    return RedriveCount(letters=len(chosen), events=len(records))
