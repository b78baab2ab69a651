"""The capture side's Kafka adapter: topic creation and the acknowledged publisher.

The only module of ``cdc/`` that imports aiokafka. ``KafkaSnapshotSink`` sends
on-demand snapshots: the events through the publisher, the begin/end markers
(not events) on its producer. ``KafkaEventPublisher.publish``
returns only when the broker acknowledged every event (``acks="all"``: all in-sync
replicas); any failure or timeout raises ``PublishFailed`` and the poller then
does not advance its saved version.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from cdc.errors import PublishFailed
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
) -> None:
    """Create the topics that do not exist yet, with the configured partition count.

    Topics are created explicitly rather than relying on broker auto-creation,
    whose partition count is the broker's default, not ours.
    """
    compacted_set = set(compacted)
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
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
    finally:
        await admin.close()


class KafkaEventPublisher:
    """Publishes enrolment events keyed by person and waits for the acknowledgements."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        *,
        enable_idempotence: bool = False,
        ack_timeout_s: float = 30.0,
    ) -> None:
        self.topic = topic
        self.ack_timeout_s = ack_timeout_s
        self._options = {
            **options,
            "acks": "all",
            "enable_idempotence": enable_idempotence,
            "linger_ms": 5,
            "max_batch_size": 1 << 20,
            "max_request_size": 4 << 20,
        }
        self._producer: AIOKafkaProducer | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        """The started producer (only inside ``async with``)."""
        if self._producer is None:
            raise RuntimeError("use the publisher inside `async with`")
        return self._producer

    async def __aenter__(self) -> Self:
        # Created here, not in __init__: a publisher never entered holds nothing open.
        self._producer = AIOKafkaProducer(**self._options)
        try:
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise PublishFailed(f"cannot connect to Kafka: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.producer.stop()

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send every event and return once all are acknowledged; else ``PublishFailed``."""
        if not events:
            return
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                futures = [
                    await self.producer.send(
                        self.topic,
                        value=event.model_dump_json().encode(),
                        key=event.kafka_key(),
                    )
                    for event in events
                ]
                await asyncio.gather(*futures)
        except (KafkaError, TimeoutError) as exc:
            raise PublishFailed(
                f"{len(events)} events to {self.topic} not acknowledged: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


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
        try:
            async with asyncio.timeout(self.publisher.ack_timeout_s):
                await self.publisher.producer.send_and_wait(
                    self.topic, value=marker.model_dump_json().encode(), key=MARKER_KEY
                )
        except (KafkaError, TimeoutError) as exc:
            raise PublishFailed(
                f"{marker.marker} marker of {marker.snapshot_id} to {self.topic} not "
                f"acknowledged: {type(exc).__name__}: {exc}"
            ) from exc
