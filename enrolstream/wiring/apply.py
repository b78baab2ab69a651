"""The apply side wired: ``consume`` and the dead-letter commands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog

from connectors.kafka import KafkaEventConsumer, KafkaRecordSink, KafkaTable, read_topic
from connectors.moodle.checks import preflight
from consumers.account_book import AccountBook
from consumers.dead_letters import (
    RedriveCount,
    count_redrive,
    pending_letters,
    plan_redrive,
    redriven_mark,
)
from consumers.errors import BrokerUnavailable, StartupRefused
from consumers.ledger import Ledger
from consumers.mapping import MappingSet, check_mapping, load_mappings
from consumers.parked import ParkedEvent, ParkedEvents
from consumers.provisioning import Provisioning
from consumers.runner import ApplyRunner
from enrolstream.crashpoints import crash_point
from enrolstream.settings import Settings
from enrolstream.startup import wait_for_broker
from enrolstream.wiring.common import (
    account_policy,
    ensure_all_topics,
    identity_resolver,
    kafka_options,
    open_moodle,
    policy,
)
from schemas.dead_letter import DeadLetter

__all__ = [
    "ConsumeResult",
    "open_runner",
    "read_dead_letters",
    "read_parked",
    "redrive",
    "run_consume",
]

log = structlog.get_logger()


@contextlib.asynccontextmanager
async def open_runner(
    settings: Settings,
    bootstrap_servers: str,
    *,
    mapping: MappingSet | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[ApplyRunner]:
    """A ready runner: mapping checked, topics created, Moodle asked, tables loaded.

    Refuses an empty mapping (``MappingError``) unless allowed,
    ``drop_action = "suspend"`` without the companion plugin, and accounts without
    ``user_field = idnumber`` (``StartupRefused``);
    waits while Moodle is down (until ``stop``); warns about sections feeding two
    courses and about mapped courses Moodle lacks or cannot enrol into.
    """
    mapping = mapping or load_mappings(settings.consumer.mappings)
    if settings.accounts.enabled and settings.moodle.user_field != "idnumber":
        raise StartupRefused(
            "accounts.enabled needs moodle.user_field = idnumber: a new account gets "
            "the idnumber the consumer finds people by"
        )
    check_mapping(
        mapping,
        settings.consumer.mappings,
        allow_empty=settings.consumer.allow_empty_mapping,
    )
    kafka = settings.kafka
    options = kafka_options(settings, bootstrap_servers)
    await ensure_all_topics(settings, bootstrap_servers)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(open_moodle(settings, stop=stop))
        await preflight(mapping, client)

        async def sink(topic: str) -> KafkaRecordSink:
            return await stack.enter_async_context(
                KafkaRecordSink(options, topic, ack_timeout_s=kafka.request_timeout_s)
            )

        ledger = Ledger(
            KafkaTable(options, kafka.ledger_topic, await sink(kafka.ledger_topic))
        )
        provisioning = None
        if settings.accounts.enabled:
            book = AccountBook(
                KafkaTable(
                    options, kafka.accounts_topic, await sink(kafka.accounts_topic)
                )
            )
            await book.load()
            provisioning = Provisioning(
                client,
                book,
                account_policy(settings),
                transform=settings.moodle.user_transform,
            )
        parked = ParkedEvents(
            KafkaTable(options, kafka.parked_topic, await sink(kafka.parked_topic))
        )
        await ledger.load()
        await parked.load()
        stream = await stack.enter_async_context(
            KafkaEventConsumer(
                options,
                kafka.events_topic,
                settings.consumer.group_id,
                session_timeout_s=settings.consumer.session_timeout_s,
            )
        )
        yield ApplyRunner(
            stream=stream,
            moodle=client,
            identities=identity_resolver(client, settings),
            mapping=mapping,
            policy=policy(settings),
            ledger=ledger,
            parked=parked,
            dead_letters=await sink(kafka.dead_letter_topic),
            parked_topic=kafka.parked_topic,
            parked_retry_s=settings.consumer.parked_retry_s,
            max_backoff_s=settings.moodle.max_backoff_s,
            crash_point=crash_point,
            provisioning=provisioning,
        )


@dataclass(frozen=True, slots=True)
class ConsumeResult:
    """How a ``consume`` run ended: the summary line, or why it never started."""

    summary: str | None


async def run_consume(
    settings: Settings,
    bootstrap_servers: str,
    *,
    until_idle: bool,
    stop: asyncio.Event,
) -> ConsumeResult:
    """``enrolstream consume``: apply events until ``stop`` (or idle).

    The mapping is read first, so a configuration error is reported before any
    waiting; then Kafka is waited for with backoff (unless ``until_idle``, which
    fails fast). Returns the summary line (None when stopped before starting).
    """
    mapping = load_mappings(settings.consumer.mappings)

    async def create_topics() -> None:
        await ensure_all_topics(settings, bootstrap_servers)

    if until_idle:
        await create_topics()
    elif not await wait_for_broker(
        create_topics,
        stop=stop,
        retriable=(BrokerUnavailable,),
        bootstrap_servers=bootstrap_servers,
        max_backoff_s=settings.moodle.max_backoff_s,
    ):
        return ConsumeResult(summary=None)
    async with open_runner(
        settings, bootstrap_servers, mapping=mapping, stop=stop
    ) as runner:
        await runner.run(stop, until_idle=until_idle)
        summary = f"{runner.stats.summary()}, parked {len(runner.parked)}"
        if runner.provisioning is not None:
            made = runner.provisioning.stats
            summary += (
                f", accounts created {made.created}, updated {made.updated}, "
                f"refused {made.refused}"
            )
        return ConsumeResult(summary=summary)


async def read_parked(settings: Settings, bootstrap_servers: str) -> list[ParkedEvent]:
    """Every parked person-term, oldest first (read from the parked topic)."""
    options = kafka_options(settings, bootstrap_servers)
    latest: dict[bytes, bytes | None] = {}
    records = await read_topic(options, settings.kafka.parked_topic)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key is not None:
            latest[record.key] = record.value  # None: released (a tombstone)
    waiting = [ParkedEvent.model_validate_json(v) for v in latest.values() if v]
    return sorted(waiting, key=lambda p: (p.parked_at, p.event.people_code_id))


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
    dry_run: bool = False,
) -> RedriveCount:
    """Re-queue the chosen dead letters (``consumers.dead_letters``).

    Letters without a value are never chosen. The event records are acknowledged
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
