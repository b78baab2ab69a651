"""Builds the apply side from settings: one place that chooses and connects adapters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog

from cdc.kafka import ensure_topics
from consumers.decisions import EnrolmentPolicy
from consumers.errors import BrokerUnavailable
from consumers.identity import IdentityResolver
from consumers.kafka import KafkaEventConsumer, KafkaRecordSink, KafkaTable
from consumers.ledger import Ledger
from consumers.mapping import MappingSet, load_mappings
from consumers.moodle import MoodleClient
from consumers.parked import ParkedEvents
from consumers.preflight import check_mapping, moodle_ready, preflight
from consumers.runner import ApplyRunner
from enrolstream.kafka_options import client_options
from enrolstream.settings import KafkaSettings, Settings

log = structlog.get_logger()


async def ensure_all_topics(kafka: KafkaSettings, bootstrap_servers: str) -> None:
    """Create every enrolstream topic that does not exist yet.

    ``BrokerUnavailable`` (retriable) when Kafka does not answer.
    """
    await ensure_topics(
        client_options(kafka, bootstrap_servers),
        [
            kafka.events_topic,
            kafka.snapshot_topic,
            kafka.ledger_topic,
            kafka.parked_topic,
            kafka.dead_letter_topic,
        ],
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
        compacted=[kafka.ledger_topic, kafka.parked_topic],
        failure=BrokerUnavailable,
    )


def moodle_client(settings: Settings) -> MoodleClient:
    """The Moodle client the settings describe."""
    moodle = settings.moodle
    return MoodleClient(
        moodle.url,
        moodle.token,
        max_input_vars=moodle.max_input_vars,
        concurrency=moodle.concurrency,
        request_timeout_s=moodle.request_timeout_s,
    )


@contextlib.asynccontextmanager
async def open_runner(
    settings: Settings,
    bootstrap_servers: str,
    *,
    mapping: MappingSet | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[ApplyRunner]:
    """A ready runner: mapping validated, topics created, ledger and parked loaded.

    Refuses an empty mapping (``MappingError``) unless allowed; warns about
    sections feeding two courses and about mapped courses Moodle lacks or cannot
    enrol into (``consumers.preflight``).
    """
    mapping = mapping or load_mappings(settings.consumer.mappings)
    check_mapping(
        mapping,
        settings.consumer.mappings,
        allow_empty=settings.consumer.allow_empty_mapping,
    )
    kafka = settings.kafka
    options = client_options(kafka, bootstrap_servers)
    await ensure_all_topics(kafka, bootstrap_servers)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(moodle_client(settings))
        client.status_function = await moodle_ready(
            client,
            drop_action=settings.consumer.drop_action,
            stop=stop,
            max_backoff_s=settings.moodle.max_backoff_s,
        )
        await preflight(mapping, client)
        ledger_sink = await stack.enter_async_context(
            KafkaRecordSink(
                options, kafka.ledger_topic, ack_timeout_s=kafka.request_timeout_s
            )
        )
        parked_sink = await stack.enter_async_context(
            KafkaRecordSink(
                options, kafka.parked_topic, ack_timeout_s=kafka.request_timeout_s
            )
        )
        dead_letters = await stack.enter_async_context(
            KafkaRecordSink(
                options, kafka.dead_letter_topic, ack_timeout_s=kafka.request_timeout_s
            )
        )
        ledger = Ledger(KafkaTable(options, kafka.ledger_topic, ledger_sink))
        parked = ParkedEvents(KafkaTable(options, kafka.parked_topic, parked_sink))
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
            identities=IdentityResolver(
                client,
                field=settings.moodle.user_field,
                transform=settings.moodle.user_transform,
            ),
            mapping=mapping,
            policy=EnrolmentPolicy.from_settings(settings.consumer),
            ledger=ledger,
            parked=parked,
            dead_letters=dead_letters,
            parked_topic=kafka.parked_topic,
            parked_retry_s=settings.consumer.parked_retry_s,
            max_backoff_s=settings.moodle.max_backoff_s,
        )
