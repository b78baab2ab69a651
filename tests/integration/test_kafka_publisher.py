"""The acknowledged publisher against the real Kafka-protocol broker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from cdc.errors import PublishFailed
from connectors.kafka.producer import AckedProducer
from connectors.kafka.publisher import KafkaEventPublisher, ensure_topics
from sandbox.broker import EmbeddedBroker
from schemas.events import EnrolmentEvent, TermKey, snapshot_event_id

pytestmark = pytest.mark.integration
TERM = TermKey(academic_year="2021", academic_term="Winter")


def event(person: str, version: int) -> EnrolmentEvent:
    return EnrolmentEvent(
        event_id=snapshot_event_id("pc", person, TERM, version),
        kind="snapshot",
        source="pc",
        people_code_id=person,
        term=TERM,
        state_version=version,
        registrations=(),
        captured_at=datetime(2021, 1, 11, tzinfo=UTC),
    )


async def read_all(
    bootstrap: str, topic: str, count: int
) -> list[tuple[bytes, EnrolmentEvent]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[tuple[bytes, EnrolmentEvent]] = []
    try:
        while len(got) < count:
            batches = await consumer.getmany(timeout_ms=5000)
            if not batches:
                break
            for messages in batches.values():
                got.extend(
                    (m.key, EnrolmentEvent.model_validate_json(m.value))
                    for m in messages
                )
    finally:
        await consumer.stop()
    return got


class TestKafkaEventPublisher:
    """Events are keyed by person and acknowledged before publish returns."""

    async def test_events_arrive_keyed_by_person_in_order(
        self, bootstrap_servers: str, topic: str
    ) -> None:
        """Every event lands once, keyed by PEOPLE_CODE_ID, each person's events in order."""
        options = {"bootstrap_servers": bootstrap_servers}
        await ensure_topics(options, [topic], partitions=4, replication_factor=1)
        events = [
            event(f"P{n % 7:09d}", version) for version, n in enumerate(range(200))
        ]
        async with KafkaEventPublisher(options, topic) as publisher:
            await publisher.publish(events)
        got = await read_all(bootstrap_servers, topic, len(events))
        assert sorted(e.event_id for _, e in got) == sorted(e.event_id for e in events)
        assert all(key == e.people_code_id.encode() for key, e in got)
        per_person: dict[str, list[int]] = {}
        for _, e in got:
            per_person.setdefault(e.people_code_id, []).append(e.state_version)
        assert all(versions == sorted(versions) for versions in per_person.values())

    async def test_paused_broker_fails_the_publish(
        self, broker_process: EmbeddedBroker | None, bootstrap_servers: str, topic: str
    ) -> None:
        """A frozen broker makes publish raise PublishFailed instead of hanging or lying."""
        if broker_process is None:
            pytest.skip("needs the embedded broker to pause it")
        options = {"bootstrap_servers": bootstrap_servers, "request_timeout_ms": 1500}
        await ensure_topics(options, [topic], partitions=1, replication_factor=1)
        async with KafkaEventPublisher(options, topic, ack_timeout_s=2.0) as publisher:
            broker_process.pause()
            try:
                with pytest.raises(PublishFailed):
                    await publisher.publish([event("P1", 1)])
            finally:
                broker_process.resume()
            await publisher.publish([event("P1", 2)])
        got = await read_all(bootstrap_servers, topic, 2)
        assert 2 in [e.state_version for _, e in got]


class TestBatchedSend:
    """send_all queues a batch per partition: records land as ``send`` would put them."""

    async def test_partitions_order_headers_and_tombstones_as_send(
        self, bootstrap_servers: str, topic: str
    ) -> None:
        """Each key in the partition aiokafka's partitioner picks, in order, headers on.

        About 4 MB in all (1 MB per partition): some partitions take more than one
        batch, queued in turn.
        """
        options = {"bootstrap_servers": bootstrap_servers}
        await ensure_topics(options, [topic], partitions=4, replication_factor=1)
        records: list[tuple[bytes | None, bytes | None]] = [
            (f"k{n % 37}".encode(), f"{n:06d}".encode() + b"x" * 10_000)
            for n in range(400)
        ]
        records[5] = (b"k5", None)  # a tombstone
        header = ("epoch", b"7")
        async with AckedProducer(options) as producer:
            await producer.send_all(topic, records, headers=[header])
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        try:
            while sum(map(len, got.values())) < len(records):
                batches = await consumer.getmany(timeout_ms=5000)
                assert batches, "records missing"
                for tp, messages in batches.items():
                    assert all(m.headers == (header,) for m in messages)
                    got.setdefault(tp.partition, []).extend(
                        (m.key, m.value) for m in messages
                    )
        finally:
            await consumer.stop()
        partitioner = DefaultPartitioner()
        expected: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        for key, value in records:
            partition = partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3])
            expected.setdefault(partition, []).append((key, value))
        assert got == expected
