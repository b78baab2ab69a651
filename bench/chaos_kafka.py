"""The fault matrix's own Kafka clients: a poison record in, the consumer group's progress out.

The harness writes to the event topic only to poison it, and reads only the
group's committed offsets (``committed()`` with the group id, without joining
the group: the embedded broker cannot list a group's offsets through the admin
API). Dead letters are read through ``enrolstream dlq list --json``, as an
operator reads them.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

#: Empty polls in a row after which a topic dump is complete.
IDLE_POLLS = 2


async def produce_poison(
    bootstrap: str, topic: str, key: bytes, value: bytes
) -> tuple[int, int]:
    """One record that is not an event; its (partition, offset)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", request_timeout_ms=30_000
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()
    return int(sent.partition), int(sent.offset)


class GroupProgress:
    """Whether a consumer group has committed past everything on a topic."""

    def __init__(self, bootstrap: str, topic: str, group_id: str) -> None:
        self.topic = topic
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            request_timeout_ms=10_000,
        )

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    async def behind(self) -> int:
        """Records not yet committed, summed over the topic's partitions.

        The embedded broker may report an end offset one short after a batch,
        so zero here is necessary, not sufficient: callers also compare Moodle.
        """
        partitions = self._consumer.partitions_for_topic(self.topic)
        if not partitions:
            await self._consumer.topics()  # refresh the metadata
            partitions = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        if not tps:
            return 0
        ends = await self._consumer.end_offsets(tps)
        behind = 0
        for tp in tps:
            committed = await self._consumer.committed(tp) or 0
            behind += max(0, ends[tp] - committed)
        return behind


async def dump_topic(bootstrap: str, topic: str) -> list[dict[str, object]]:
    """Every record of ``topic`` (partition, offset, key, value as text), for a post-mortem."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, request_timeout_ms=10_000
    )
    await consumer.start()
    records: list[dict[str, object]] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            return records
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        idle = 0
        while idle < IDLE_POLLS:  # until idle: the broker's end offsets may fall short
            batches = await consumer.getmany(timeout_ms=300)
            idle = 0 if batches else idle + 1
            for messages in batches.values():
                records += [
                    {
                        "partition": m.partition,
                        "offset": m.offset,
                        "timestamp": m.timestamp,
                        "key": (m.key or b"").decode(errors="replace"),
                        "value": None
                        if m.value is None
                        else m.value.decode(errors="replace"),
                    }
                    for m in messages
                ]
    finally:
        await consumer.stop()
    return sorted(
        records, key=lambda r: (int(str(r["partition"])), int(str(r["offset"])))
    )
