"""The mappings topic read by a running consumer: every record once, in order.

``KafkaMappingFeed`` is the consumer side's ``MappingFeed``: one group-less
consumer assigned every partition of the topic, from the beginning (the topic is
compacted and small: one record per term and revision). ``read_new(wait=False)``
returns what arrived since the last call without waiting; ``wait=True`` reads up
to the end offsets as of now (start-up, and before deciding events published for
a revision not yet read). Records of a term keep their order (one key, one
partition).
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from connectors.kafka.producer import describe_kafka_failure
from connectors.kafka.stream import read_to_end
from consumers.errors import BrokerUnavailable

__all__ = ["KafkaMappingFeed"]


class KafkaMappingFeed:
    """Every record of the mappings topic, once each; an async context manager."""

    def __init__(self, options: dict[str, Any], topic: str) -> None:
        self.options = options
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> Self:
        consumer = AIOKafkaConsumer(
            **self.options, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        try:
            await consumer.start()
            await consumer.topics()
            partitions = consumer.partitions_for_topic(self.topic) or set()
            self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if self._tps:
                consumer.assign(self._tps)
                await consumer.seek_to_beginning(*self._tps)
        except asyncio.CancelledError:
            await consumer.stop()  # a start-up ended by SIGTERM
            raise
        except KafkaError as exc:
            await consumer.stop()
            reason = describe_kafka_failure(exc, self.options.get("bootstrap_servers"))
            raise BrokerUnavailable(f"cannot read {self.topic}: {reason}") from exc
        self._consumer = consumer
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def read_new(self, *, wait: bool) -> list[bytes]:
        """Record values not read yet (see the module doc)."""
        consumer = self._consumer
        if consumer is None or not self._tps:
            return []
        values: list[bytes] = []
        try:
            if not wait:
                batches = await consumer.getmany(timeout_ms=0)
                return self._values(batches, values)
            return self._values({None: await read_to_end(consumer, self._tps)}, values)
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc}") from exc

    @staticmethod
    def _values(batches: dict[Any, list[Any]], values: list[bytes]) -> list[bytes]:
        ordered = sorted(
            (m for messages in batches.values() for m in messages),
            key=lambda m: (m.partition, m.offset),
        )
        values.extend(m.value for m in ordered if m.value is not None)
        return values
