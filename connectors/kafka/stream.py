"""The consumer side's Kafka adapter: the event consumer, table topics, record sinks.

The only module of ``consumers/`` that imports aiokafka. The runner sees plain
``RawMessage`` values and ``(topic, partition)`` tuples, never aiokafka types.

- ``KafkaEventConsumer``: a group member with manual commits, ``getmany`` and
  ``rewind`` (seek back to where an unfinished batch began: never skip forward).
- ``KafkaTable``: a keyed topic read as a table (latest value per key wins,
  ``None`` deletes), used for the ownership ledger and the parked events. The
  reader takes the latest value itself because compaction is not guaranteed to
  have run (the embedded broker never runs it).
- ``KafkaRecordSink``: acknowledged appends (dead letters, redrives).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.partitioner import DefaultPartitioner

from connectors.kafka.producer import AckedProducer, describe_kafka_failure
from consumers.errors import BrokerUnavailable, PartitionsRevoked
from consumers.ports import Partition, RawMessage

log = structlog.get_logger()

_TABLE_FETCH_WAIT_MS = 50
#: Fetches past the end offsets a table read makes at most (see ``read_topic``).
_TAIL_FETCHES = 3


class _AssignmentListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """The member's side of a rebalance: wait for the write turn, note assignments.

    ``on_partitions_revoked`` runs before the member rejoins, and the broker
    gives the partitions to another member only after every member rejoined
    (or the rebalance timeout passed). Marking ``revoking`` first stops new
    writes (``ensure_held``), and taking ``turn`` waits for the batch in flight
    to record its outcomes: its next owner starts after that. (The offset commit
    comes after the turn: a broker may hold a commit until the rebalance ends.)
    """

    def __init__(self) -> None:
        self.changed = False
        self.revoking = False
        self.epoch = 0
        self.turn = asyncio.Lock()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Stop new writes, wait for the ones in flight, then let the partitions go."""
        del revoked
        self.revoking = True
        self.epoch += 1
        async with self.turn:
            pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """Every assignment, the first too, asks for the tables to be read again.

        The first: a member joining a live group read its tables before the
        others released the partitions (and wrote to them). Later ones, even of
        the same partitions: after an eviction another member may have held them.
        """
        del assigned
        self.changed = True
        self.revoking = False
        self.epoch += 1


def _leave_even_at_generation_zero(consumer: AIOKafkaConsumer) -> None:
    """Make ``stop()`` send LeaveGroup for a member of generation 0.

    aiokafka 0.14 leaves the group on stop only when its generation is above 0;
    Apache Kafka numbers generations from 1, but some Kafka-protocol brokers (the
    embedded one) start at 0, and there a stopped consumer would stay listed as a
    live member (replay then refuses to move the group). LeaveGroup carries no
    generation, so presenting 1 only lets aiokafka's own leave path run.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if (
        coordinator is not None
        and getattr(coordinator, "generation", None) == 0
        and getattr(coordinator, "member_id", "")
    ):
        coordinator.generation = 1


def _raw(message: Any) -> RawMessage:
    return RawMessage(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=message.timestamp,
    )


class KafkaEventConsumer:
    """A consumer-group member on one topic with manual, per-partition commits."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        group_id: str,
        *,
        max_records: int = 2000,
        session_timeout_s: float = 10.0,
        fetch_max_wait_ms: int = 100,
    ) -> None:
        """``fetch_max_wait_ms``: how long the broker may hold a fetch with nothing
        new. Apache Kafka answers a fetch as soon as a record arrives; the embedded
        broker was seen to answer late within the wait (p50 ~70 ms, up to ~230 ms at
        aiokafka's default 500 ms). Requests on one connection are answered in order,
        so the end offsets the lag is sampled from also wait behind a held fetch."""
        self.topic = topic
        self._options = {
            **options,
            "group_id": group_id,
            "session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": int(session_timeout_s * 1000 / 3),
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "max_poll_records": max_records,
            "fetch_max_wait_ms": fetch_max_wait_ms,
            "isolation_level": "read_committed",
        }
        self._started: AIOKafkaConsumer | None = None
        self._listener = _AssignmentListener()

    @property
    def _consumer(self) -> AIOKafkaConsumer:
        if self._started is None:
            raise RuntimeError("use the consumer inside `async with`")
        return self._started

    async def __aenter__(self) -> Self:
        # Created here, not in __init__: a consumer never entered holds nothing open.
        self._started = AIOKafkaConsumer(**self._options)
        self._started.subscribe([self.topic], listener=self._listener)
        try:
            await self._consumer.start()
        except asyncio.CancelledError:
            await self._consumer.stop()  # a start-up ended by SIGTERM
            raise
        except KafkaError as exc:
            await self._consumer.stop()
            raise BrokerUnavailable(f"cannot join the consumer group: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _leave_even_at_generation_zero(self._consumer)
        await self._consumer.stop()

    def take_reassigned(self) -> bool:
        """True once after each assignment (read the ledger and parked tables again)."""
        changed, self._listener.changed = self._listener.changed, False
        return changed

    def assignment_epoch(self) -> int:
        """Changes at every revocation and assignment."""
        return self._listener.epoch

    @asynccontextmanager
    async def write_turn(self) -> AsyncIterator[None]:
        """The exclusive turn to write; a revocation waits for it to end."""
        async with self._listener.turn:
            yield

    def ensure_held(self, epoch: int) -> None:
        """``PartitionsRevoked`` if a rebalance began since ``epoch`` or the
        member was dropped from the group (heartbeat refused: generation reset)."""
        listener = self._listener
        if listener.revoking or listener.epoch != epoch or not self._in_group():
            raise PartitionsRevoked(
                "a consumer-group rebalance is moving this member's partitions"
            )

    def _in_group(self) -> bool:
        # aiokafka resets the generation to -1 when the coordinator no longer
        # knows the member (session expired, generation fenced) and rejoins
        # later; from then on the partitions may already be someone else's.
        coordinator = getattr(self._consumer, "_coordinator", None)
        generation = getattr(coordinator, "generation", 0)
        return not isinstance(generation, int) or generation >= 0

    def owns(self, key: bytes) -> bool:
        """Whether the record keyed ``key`` lives on a partition this member holds.

        Uses the default partitioner the publishers use (murmur2 of the key).
        """
        partitions = sorted(self._consumer.partitions_for_topic(self.topic) or ())
        if not partitions:
            return True
        partition = DefaultPartitioner()(key, partitions, partitions)
        return TopicPartition(self.topic, partition) in self._consumer.assignment()

    async def getmany(self, timeout_ms: int) -> dict[Partition, list[RawMessage]]:
        """The next records per partition (empty when none arrived within the timeout)."""
        try:
            batches = await self._consumer.getmany(timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise BrokerUnavailable(f"fetch failed: {exc}") from exc
        return {
            (tp.topic, tp.partition): [_raw(m) for m in messages]
            for tp, messages in batches.items()
            if messages
        }

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit the next offset to read, per partition."""
        if not offsets:
            return
        try:
            await self._consumer.commit(
                {
                    TopicPartition(topic, partition): offset
                    for (topic, partition), offset in offsets.items()
                }
            )
        except (CommitFailedError, IllegalStateError) as exc:
            # the group rebalanced since the batch was read: the partitions'
            # next owner reads it again
            raise PartitionsRevoked(f"offset commit refused: {exc}") from exc
        except KafkaError as exc:
            raise BrokerUnavailable(f"offset commit failed: {exc}") from exc

    def rewind(self, offsets: Mapping[Partition, int]) -> None:
        """Seek back to where an unfinished batch began, so it is read again."""
        for (topic, partition), offset in offsets.items():
            tp = TopicPartition(topic, partition)
            if tp in self._consumer.assignment():
                self._consumer.seek(tp, offset)

    async def lag(self) -> int:
        """Records between this member's positions and the end of its partitions."""
        if not self._consumer.assignment():
            return -1
        return sum((await self.lags()).values())

    async def lags(self) -> dict[int, int]:
        """Records between this member's position and the end, per partition held."""
        assignment = self._consumer.assignment()
        if not assignment:
            return {}
        try:
            ends = await self._consumer.end_offsets(list(assignment))
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot read end offsets: {exc}") from exc
        lags: dict[int, int] = {}
        for tp in sorted(assignment, key=lambda tp: tp.partition):
            try:
                position = await self._consumer.position(tp)
            except IllegalStateError:
                continue  # revoked by a rebalance meanwhile: no longer this member's lag
            lags[tp.partition] = max(0, ends[tp] - position)
        return lags


class KafkaRecordSink(AckedProducer):
    """Acknowledged appends to one topic (dead letters, redrives, table writes)."""

    failure = BrokerUnavailable

    def __init__(
        self, options: dict[str, Any], topic: str, *, ack_timeout_s: float = 30.0
    ) -> None:
        super().__init__(options, ack_timeout_s=ack_timeout_s, linger_ms=2)
        self.topic = topic

    async def append(
        self, records: Sequence[tuple[bytes | None, bytes | None]]
    ) -> None:
        """Send (key, value) records and wait until all are acknowledged."""
        await self.send_all(self.topic, records)


async def read_to_end(
    consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]
) -> list[Any]:
    """The records of the assigned ``tps`` from their positions to the end offsets
    as of now, in fetch order (each partition's in offset order).

    At the end offsets, a few short fetches more: a broker may report a high
    watermark short after a multi-record batch (the embedded one does). Bounded:
    while another member keeps writing, a reader that waited for a fetch
    returning nothing would never finish.
    """
    ends = await consumer.end_offsets(list(tps))
    records: list[Any] = []
    tail_fetches = 0
    while tail_fetches < _TAIL_FETCHES:
        remaining = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
        if not remaining:
            tail_fetches += 1
        batches = await consumer.getmany(
            *(remaining or tps), timeout_ms=1000 if remaining else 200
        )
        for messages in batches.values():
            records.extend(messages)
        if not remaining and not batches:
            break
    return records


async def read_topic(options: dict[str, Any], topic: str) -> list[RawMessage]:
    """Every record of ``topic`` from the beginning to its end as of now.

    "As of now" is the end offsets read at the start, and whatever the few
    fetches past them return; records another writer appends meanwhile may or
    may not be in the result, and never keep the read from ending.
    """
    consumer = AIOKafkaConsumer(
        **options,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # a fetch the broker holds to the end of its wait delays every read
        # (a rebalance reads the tables again before the next batch)
        fetch_max_wait_ms=_TABLE_FETCH_WAIT_MS,
    )
    try:
        # start() inside: an unreachable broker is a BrokerUnavailable, and the
        # consumer is stopped (not left for the garbage collector to complain about)
        await consumer.start()
        await consumer.topics()  # fetches cluster metadata
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = [_raw(m) for m in await read_to_end(consumer, tps)]
    except KafkaError as exc:
        reason = describe_kafka_failure(exc, options.get("bootstrap_servers"))
        raise BrokerUnavailable(f"cannot read {topic}: {reason}") from exc
    else:
        return records
    finally:
        await consumer.stop()


class KafkaTable:
    """A keyed topic read as a table: the latest value per key, ``None`` deletes."""

    def __init__(
        self, options: dict[str, Any], topic: str, sink: KafkaRecordSink
    ) -> None:
        self.options = options
        self.topic = topic
        self.sink = sink

    async def load(self) -> dict[bytes, bytes]:
        """The table as of now (latest value per key; deleted keys absent)."""
        table: dict[bytes, bytes] = {}
        records = await read_topic(self.options, self.topic)
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            if record.key is None:
                continue
            if record.value is None:
                table.pop(record.key, None)
            else:
                table[record.key] = record.value
        return table

    async def put(self, rows: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Write rows (``None`` deletes the key), acknowledged."""
        await self.sink.append(list(rows))
