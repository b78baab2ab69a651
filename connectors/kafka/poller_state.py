"""The poller's state topic: acknowledged appends, and reads to the end (``cdc.replica``).

One partition, compacted (``cleanup.policy=compact``): the latest record of
each key is the state. Readers never rely on compaction having run (the
embedded broker never runs it): they fold every record in offset order. A
reader writes a marker record and reads until it comes back, since a broker
may report the end short after a multi-record batch (the embedded one does).
Every record carries the writer's lease epoch in a header, for a post-mortem
of who wrote what.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from cdc.errors import PublishFailed
from cdc.replica import LoggedRecord
from cdc.state_records import StateRecord
from connectors.kafka.producer import AckedProducer, describe_kafka_failure

EPOCH_HEADER = "enrolstream-lease-epoch"
_FETCH_MS = 1000


class KafkaStateLog(AckedProducer):
    """``StateLog`` on one partition of the state topic; an async context manager."""

    failure = PublishFailed

    def __init__(
        self, options: dict[str, Any], topic: str, *, ack_timeout_s: float = 30.0
    ) -> None:
        super().__init__(options, ack_timeout_s=ack_timeout_s, linger_ms=0)
        self.topic = topic
        self._reader_options = {**options, "enable_auto_commit": False}
        self._tp = TopicPartition(topic, 0)
        self._reader: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self._reader = AIOKafkaConsumer(**self._reader_options)
        try:
            await self._reader.start()
            self._reader.assign([self._tp])
        except KafkaError as exc:
            await self.__aexit__(None, None, None)
            raise PublishFailed(
                describe_kafka_failure(
                    exc, self._reader_options.get("bootstrap_servers")
                )
            ) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
        await super().__aexit__(exc_type, exc, tb)

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._reader is None:
            raise RuntimeError("use the state log inside `async with`")
        return self._reader

    async def append(self, records: Sequence[StateRecord], *, epoch: int) -> None:
        """Write the records in order, acknowledged; else ``PublishFailed``."""
        await self.send_all(
            self.topic, records, headers=[(EPOCH_HEADER, str(epoch).encode())]
        )

    async def first(self) -> LoggedRecord | None:
        """The first record still held (None: the topic is empty)."""
        consumer = self._consumer
        try:
            await consumer.seek_to_beginning(self._tp)
            end = int((await consumer.end_offsets([self._tp]))[self._tp])
            if end == 0:
                return None
            async with asyncio.timeout(self.ack_timeout_s):
                while True:
                    batches = await consumer.getmany(self._tp, timeout_ms=_FETCH_MS)
                    for message in batches.get(self._tp, []):
                        return LoggedRecord(message.offset, message.key, message.value)
        except TimeoutError:
            raise PublishFailed(
                f"{self.topic}: its first record did not come"
            ) from None
        except KafkaError as exc:
            raise PublishFailed(f"cannot read {self.topic}: {exc}") from exc

    async def read_until(self, offset: int, marker: StateRecord) -> list[LoggedRecord]:
        """Every record from ``offset`` up to and including ``marker`` (written before).

        Not until the reported end offset: a broker may report it short after a
        multi-record batch (the embedded one does), and a quiet fetch may only
        mean that the next one has not come back yet. ``PublishFailed`` when the
        marker does not come within the acknowledgement timeout.
        """
        consumer = self._consumer
        records: list[LoggedRecord] = []
        try:
            consumer.seek(self._tp, offset)
            async with asyncio.timeout(self.ack_timeout_s):
                while True:
                    batches = await consumer.getmany(self._tp, timeout_ms=_FETCH_MS)
                    for message in batches.get(self._tp, []):
                        records.append(
                            LoggedRecord(message.offset, message.key, message.value)
                        )
                        if (message.key, message.value) == marker:
                            return records
        except TimeoutError:
            raise PublishFailed(
                f"{self.topic}: the marker written before reading did not come back "
                f"within {self.ack_timeout_s:.0f} s"
            ) from None
        except KafkaError as exc:
            raise PublishFailed(f"cannot read {self.topic}: {exc}") from exc
