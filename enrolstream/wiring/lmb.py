"""The LMB source wired: ``lmb serve``, ``lmb mapping`` and ``lmb snapshot``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

import structlog

from cdc.snapshot import new_snapshot_id, publish_bracketed
from connectors.kafka.lmb import KafkaLmbSink, load_lmb_state
from connectors.kafka.publisher import (
    KafkaEventPublisher,
    KafkaSnapshotSink,
    ensure_topics,
)
from connectors.lmb.endpoint import EndpointOptions, LmbEndpoint, server_tls
from connectors.lmb.ims import parse_ims
from connectors.local.message_log import DatedMessageLog
from enrolstream.crashpoints import crash_point
from enrolstream.settings import Settings
from enrolstream.settings_lmb import LmbSettings
from enrolstream.startup import wait_for_broker
from enrolstream.wiring.common import kafka_options, moodle_client
from lmb.book import Book
from lmb.errors import EndpointRefused, PublishFailed
from lmb.intake import LmbIntake
from lmb.mapping import MappingUnit, MoodleCourseRef, mapping_file, mapping_units
from lmb.snapshot import check_state, snapshot_events, snapshot_version, state_terms
from schemas.events import TermKey
from schemas.snapshot import SnapshotMarker

__all__ = [
    "endpoint_options",
    "generate_mapping",
    "open_lmb",
    "run_lmb_serve",
    "run_lmb_snapshot",
]

log = structlog.get_logger()


def endpoint_options(lmb: LmbSettings) -> EndpointOptions:
    """The endpoint's options; ``EndpointRefused`` when the TLS files cannot be used."""
    tls = None
    if (lmb.tls_certfile is None) != (lmb.tls_keyfile is None):
        raise EndpointRefused("lmb.tls_certfile and lmb.tls_keyfile go together")
    if lmb.tls_certfile is not None and lmb.tls_keyfile is not None:
        tls = server_tls(lmb.tls_certfile, lmb.tls_keyfile)
    return EndpointOptions(
        username=lmb.username,
        password=lmb.password,
        host=lmb.host,
        port=lmb.port,
        path=lmb.path,
        max_body_bytes=lmb.max_body_bytes,
        tls=tls,
    )


async def ensure_lmb_topics(settings: Settings, bootstrap_servers: str) -> None:
    """Create the event, state (compacted) and dead-letter topics; ``PublishFailed``."""
    kafka, lmb = settings.kafka, settings.lmb
    await ensure_topics(
        kafka_options(settings, bootstrap_servers),
        [kafka.events_topic, lmb.state_topic, lmb.dead_letter_topic],
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
        compacted=[lmb.state_topic],
        failure=PublishFailed,
    )


@contextlib.asynccontextmanager
async def open_lmb(
    settings: Settings, bootstrap_servers: str, options: EndpointOptions
) -> AsyncIterator[tuple[LmbEndpoint, LmbIntake]]:
    """The listening endpoint over an intake loaded from the state topic."""
    lmb = settings.lmb
    kafka_opts = kafka_options(settings, bootstrap_servers)
    book, unreadable = await load_lmb_state(kafka_opts, lmb.state_topic)
    if unreadable:
        log.warning("lmb_state_unreadable", keys=unreadable[:20], count=len(unreadable))
    log.info("lmb_state_loaded", people=len(book.people), groups=len(book.groups))
    async with KafkaLmbSink(
        kafka_opts,
        events_topic=settings.kafka.events_topic,
        state_topic=lmb.state_topic,
        dead_letter_topic=lmb.dead_letter_topic,
        ack_timeout_s=settings.kafka.request_timeout_s,
        enable_idempotence=settings.kafka.enable_idempotence,
    ) as sink:
        intake = LmbIntake(
            parse=parse_ims,
            book=book,
            publisher=sink,
            state=sink,
            dead_letters=sink,
            message_log=DatedMessageLog(lmb.message_log_dir),
            source=lmb.source_name,
            crash_point=crash_point,
        )
        async with LmbEndpoint(intake, options) as endpoint:
            yield endpoint, intake


async def run_lmb_serve(
    settings: Settings, bootstrap_servers: str, *, stop: asyncio.Event
) -> bool:
    """Serve LMB until ``stop``; False when stopped before Kafka answered.

    The endpoint's settings are checked first (``EndpointRefused``), then Kafka
    is waited for with backoff, then the state is loaded and the endpoint opens.
    """
    options = endpoint_options(settings.lmb)
    LmbEndpoint.check(options)

    async def create_topics() -> None:
        await ensure_lmb_topics(settings, bootstrap_servers)

    if not await wait_for_broker(
        create_topics,
        stop=stop,
        retriable=(PublishFailed,),
        bootstrap_servers=bootstrap_servers,
        max_backoff_s=settings.poller.max_backoff_s,
    ):
        return False
    async with open_lmb(settings, bootstrap_servers, options):
        await stop.wait()
    log.info("lmb_endpoint_stopped")
    return True


async def generate_mapping(
    settings: Settings, bootstrap_servers: str, term: str
) -> tuple[dict[str, dict[str, object]], Sequence[MappingUnit]]:
    """The term's mapping from the groups received, courses found by idnumber in Moodle."""
    book: Book
    book, _ = await load_lmb_state(
        kafka_options(settings, bootstrap_servers), settings.lmb.state_topic
    )
    units = mapping_units(book.groups.values(), term)
    courses: dict[str, MoodleCourseRef] = {}
    async with moodle_client(settings) as client:
        for unit in units:
            found = await client.get_courses_by_field("idnumber", unit.idnumber)
            if len(found) == 1:
                courses[unit.idnumber] = MoodleCourseRef(
                    id=int(str(found[0]["id"])), shortname=str(found[0]["shortname"])
                )
    return mapping_file(units, courses)


def snapshot_terms(settings: Settings, book: Book) -> list[TermKey]:
    """The default terms: those ``consumer.mappings`` names, else those in the state.

    Reconcile decides only mapped courses, and a mapped term nobody is in is
    what its empty-source guard is for; the state's terms serve a site whose
    settings name no mapping file (mappings published on the topic only).
    """
    mapped = [TermKey.parse(label) for label in settings.consumer.mappings]
    return sorted(mapped, key=TermKey.label) or state_terms(book)


async def run_lmb_snapshot(
    settings: Settings,
    bootstrap_servers: str,
    *,
    terms: Sequence[TermKey] = (),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SnapshotMarker:
    """Publish every person's LMB state in ``terms`` as one snapshot; the end marker.

    The state topic is read whole as ``lmb serve`` reads it at start-up;
    ``SnapshotRefused`` when it is missing, empty or a record cannot be read.
    Terms: ``terms``, else ``snapshot_terms``.
    """
    kafka, lmb = settings.kafka, settings.lmb
    options = kafka_options(settings, bootstrap_servers)
    book, unreadable = await load_lmb_state(options, lmb.state_topic)
    check_state(book, unreadable)
    chosen = list(terms) or snapshot_terms(settings, book)
    version = snapshot_version(book)
    snapshot_id = new_snapshot_id(lmb.source_name, version)
    events = snapshot_events(
        book,
        chosen,
        source=lmb.source_name,
        snapshot_id=snapshot_id,
        captured_at=clock(),
    )
    await ensure_topics(
        options,
        [kafka.snapshot_topic],
        partitions=kafka.partitions,
        replication_factor=kafka.replication_factor,
        failure=PublishFailed,
    )
    async with KafkaEventPublisher(
        options,
        kafka.snapshot_topic,
        enable_idempotence=kafka.enable_idempotence,
        ack_timeout_s=kafka.request_timeout_s,
    ) as publisher:
        return await publish_bracketed(
            KafkaSnapshotSink(publisher),
            events,
            snapshot_id=snapshot_id,
            source=lmb.source_name,
            state_version=version,
            terms=chosen,
            clock=clock,
        )
