"""The capture side's Kafka adapter: topic creation and the acknowledged publisher.

The only module of ``cdc/`` that imports aiokafka; the acknowledged producer it
publishes with is shared with the consumers (``connectors/kafka/producer.py``).
``KafkaEventPublisher.publish`` returns only when the broker acknowledged every
event (``acks="all"``: all in-sync replicas); any failure or timeout raises
``PublishFailed`` and the poller then does not advance its saved version.
``KafkaSnapshotSink`` sends on-demand snapshots: the events through the
publisher, the begin/end markers (not events) as raw records.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from cdc.errors import PublishFailed
from connectors.kafka.producer import AckedProducer, Record, describe_kafka_failure
from schemas.events import EnrolmentEvent
from schemas.snapshot import MARKER_KEY, SnapshotMarker

log = structlog.get_logger()


async def ensure_topics(
    options: dict[str, Any],
    topics: Iterable[str],
    *,
    partitions: int,
    replication_factor: int,
    compacted: Iterable[str] = (),
    failure: type[Exception] = PublishFailed,
) -> None:
    """Create the topics that do not exist yet, with the configured partition count.

    Topics are created explicitly rather than relying on broker auto-creation,
    whose partition count is the broker's default, not ours. This is the first
    contact with Kafka of every command: an unreachable broker raises ``failure``
    (the caller's side's retriable error) naming the bootstrap servers.
    """
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        await _create_missing(admin, topics, partitions, replication_factor, compacted)
    except KafkaError as exc:
        raise failure(
            describe_kafka_failure(exc, options.get("bootstrap_servers"))
        ) from exc
    finally:
        await admin.close()


async def _create_missing(
    admin: AIOKafkaAdminClient,
    topics: Iterable[str],
    partitions: int,
    replication_factor: int,
    compacted: Iterable[str],
) -> None:
    compacted_set = set(compacted)
    existing = set(await admin.list_topics())
    wanted = [
        NewTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs={"cleanup.policy": "compact"}
            if name in compacted_set
            else {},
        )
        for name in dict.fromkeys(topics)
        if name not in existing
    ]
    if wanted:
        # another process may have created one meanwhile: fine
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(wanted)
        log.info(
            "topics_created",
            topics=[topic.name for topic in wanted],
            partitions=partitions,
        )


class KafkaEventPublisher(AckedProducer):
    """Publishes enrolment events keyed by person and waits for the acknowledgements."""

    failure = PublishFailed

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        *,
        enable_idempotence: bool = False,
        ack_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(
            options, ack_timeout_s=ack_timeout_s, enable_idempotence=enable_idempotence
        )
        self.topic = topic

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send every event and return once all are acknowledged; else ``PublishFailed``."""
        await self.send_records(
            [(event.kafka_key(), event.model_dump_json().encode()) for event in events]
        )

    async def send_records(self, records: Sequence[Record]) -> None:
        """Send raw (key, value) records to the topic, acknowledged; else ``PublishFailed``."""
        await self.send_all(self.topic, records)


class KafkaSnapshotSink:
    """A ``SnapshotSink`` on an entered ``KafkaEventPublisher`` (its topic, its producer)."""

    def __init__(self, publisher: KafkaEventPublisher) -> None:
        self.publisher = publisher

    @property
    def topic(self) -> str:
        """The snapshot topic (the publisher's)."""
        return self.publisher.topic

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send the events keyed by person; ``PublishFailed`` unless all are acked."""
        await self.publisher.publish(events)

    async def publish_marker(self, marker: SnapshotMarker) -> None:
        """Send one marker keyed ``MARKER_KEY``; ``PublishFailed`` unless acked."""
        await self.publisher.send_records(
            [(MARKER_KEY, marker.model_dump_json().encode())]
        )
