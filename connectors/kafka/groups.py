"""Kafka for ``replay``: a consumer group's offsets on the event topic, and range reads.

Also the live-member check (``describe_consumer_group``) that ``reconcile --apply``
and ``ledger adopt`` make before writing the ledger.

Imports aiokafka, like ``consumers/kafka.py``; kept apart only because that
module has another owner. What is used, and why, given the brokers we meet:

- group state through the admin client's ``describe_consumer_groups``;
- committed offsets through a consumer's ``committed()`` (the embedded broker
  breaks ``list_consumer_group_offsets``);
- a reset is a consumer with the group id that ``assign()``\\ s the partitions and
  commits: Kafka accepts it only while the group is Empty, so a live member
  makes it fail (translated to ``ReplayRefused``);
- end offsets are *measured*, not trusted: the embedded broker reports the
  base offset of a partition's last record batch plus one as its end (a batch
  of ten records at 0..9 reports 1). ``end_offsets`` fetches from the reported
  end minus one until nothing more comes; on Apache Kafka that reads one record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, KafkaError

from connectors.kafka.producer import describe_kafka_failure
from consumers.errors import BrokerUnavailable
from consumers.ports import RawMessage
from consumers.replay.offsets import ReplayRefused

#: Group states in which nobody consumes, so offsets may be moved.
IDLE_STATES = frozenset({"Empty", "Dead"})
_FETCH_WAIT_MS = 100


@dataclass(frozen=True, slots=True)
class GroupState:
    """A consumer group as the coordinator describes it."""

    group_id: str
    state: str
    members: tuple[str, ...]

    @property
    def live(self) -> bool:
        """Whether anyone consumes (or is joining): offsets must not be moved."""
        return bool(self.members) or self.state not in IDLE_STATES


def _member_label(member: Mapping[str, Any]) -> str:
    where = "@".join(
        str(part)
        for part in (member.get("client_id"), member.get("client_host"))
        if part
    )
    return f"{member.get('member_id')}" + (f" ({where})" if where else "")


async def _describe(admin: AIOKafkaAdminClient, group_id: str) -> GroupState:
    try:
        responses = await admin.describe_consumer_groups([group_id])
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot describe {group_id}: {exc}") from exc
    for response in responses:
        for group in response.to_object()["groups"]:
            if group["group"] == group_id:
                members = tuple(_member_label(m) for m in group["members"])
                return GroupState(group_id, str(group["state"]), members)
    return GroupState(group_id, "Dead", ())


async def describe_consumer_group(options: dict[str, Any], group_id: str) -> GroupState:
    """``group_id``'s state and members, through a short-lived admin client.

    Joins nothing and commits nothing. ``BrokerUnavailable`` when Kafka does not
    answer.
    """
    admin = AIOKafkaAdminClient(**options)
    try:
        await admin.start()
        return await _describe(admin, group_id)
    except KafkaError as exc:
        reason = describe_kafka_failure(exc, options.get("bootstrap_servers"))
        raise BrokerUnavailable(reason) from exc
    finally:
        await admin.close()


class GroupOffsets:
    """One consumer group's offsets on one topic; an async context manager."""

    def __init__(self, options: dict[str, Any], topic: str, group_id: str) -> None:
        self.options = options
        self.topic = topic
        self.group_id = group_id
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> Self:
        self._admin = AIOKafkaAdminClient(**self.options)
        self._consumer = AIOKafkaConsumer(
            **self.options,
            group_id=self.group_id,
            enable_auto_commit=False,
            fetch_max_wait_ms=_FETCH_WAIT_MS,
        )
        try:
            await self._admin.start()
            await self._consumer.start()
            await self._consumer.topics()  # fetches cluster metadata
        except KafkaError as exc:
            await self.__aexit__(None, None, None)
            reason = describe_kafka_failure(exc, self.options.get("bootstrap_servers"))
            raise BrokerUnavailable(reason) from exc
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The started consumer (only inside ``async with``)."""
        if self._consumer is None:
            raise RuntimeError("use GroupOffsets inside `async with`")
        return self._consumer

    @property
    def partitions(self) -> list[int]:
        """The topic's partitions (empty when the topic does not exist)."""
        return [tp.partition for tp in self._tps]

    async def describe_group(self) -> GroupState:
        """The group's state and members."""
        if self._admin is None:
            raise RuntimeError("use GroupOffsets inside `async with`")
        return await _describe(self._admin, self.group_id)

    async def beginning_offsets(self) -> dict[int, int]:
        """The first offset still held, per partition."""
        try:
            found = await self.consumer.beginning_offsets(self._tps)
        except KafkaError as exc:
            raise BrokerUnavailable(f"beginning offsets failed: {exc}") from exc
        return {tp.partition: int(offset) for tp, offset in found.items()}

    async def end_offsets(self) -> dict[int, int]:
        """The offset after the last record, per partition, measured (see module doc)."""
        try:
            reported = await self.consumer.end_offsets(self._tps)
            ends = {tp.partition: int(offset) for tp, offset in reported.items()}
            probe = {tp: ends[tp.partition] - 1 for tp in self._tps}
            for message in await self._read(
                {tp: o for tp, o in probe.items() if o >= 0}
            ):
                ends[message.partition] = max(
                    ends[message.partition], message.offset + 1
                )
        except KafkaError as exc:
            raise BrokerUnavailable(f"end offsets failed: {exc}") from exc
        return ends

    async def offsets_for_time(
        self, timestamp_ms: int
    ) -> dict[int, tuple[int, int] | None]:
        """Per partition, (offset, timestamp) of the first record at or after the time."""
        try:
            found = await self.consumer.offsets_for_times(
                dict.fromkeys(self._tps, timestamp_ms)
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"offsets_for_times failed: {exc}") from exc
        return {
            tp.partition: None if answer is None else (answer.offset, answer.timestamp)
            for tp, answer in found.items()
        }

    async def committed(self) -> dict[int, int | None]:
        """The group's committed offset per partition (None: never committed)."""
        result: dict[int, int | None] = {}
        try:
            for tp in self._tps:
                offset = await self.consumer.committed(tp)
                result[tp.partition] = None if offset is None or offset < 0 else offset
        except KafkaError as exc:
            raise BrokerUnavailable(f"reading committed offsets failed: {exc}") from exc
        return result

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit ``offsets`` for the group; ``ReplayRefused`` if a member joined."""
        chosen = {TopicPartition(self.topic, p): o for p, o in offsets.items()}
        try:
            self.consumer.assign(list(chosen))
            await self.consumer.commit(chosen)
        except CommitFailedError as exc:
            state = await self.describe_group()
            raise ReplayRefused(self.group_id, state.state, state.members) from exc
        except KafkaError as exc:
            raise BrokerUnavailable(f"offset commit failed: {exc}") from exc

    async def read(
        self, start: Mapping[int, int], end: Mapping[int, int]
    ) -> list[RawMessage]:
        """Records from ``start`` up to (excluding) ``end`` per partition; commits nothing."""
        wanted = {
            TopicPartition(self.topic, p): offset
            for p, offset in start.items()
            if offset < end.get(p, 0)
        }
        try:
            records = await self._read(wanted, stop_at=end)
        except KafkaError as exc:
            raise BrokerUnavailable(f"cannot read {self.topic}: {exc}") from exc
        return sorted(records, key=lambda r: (r.partition, r.offset))

    async def _read(
        self,
        start: Mapping[TopicPartition, int],
        *,
        stop_at: Mapping[int, int] | None = None,
    ) -> list[RawMessage]:
        # A separate group-less consumer: reading must never touch the group.
        if not start:
            return []
        reader = AIOKafkaConsumer(
            **self.options, enable_auto_commit=False, fetch_max_wait_ms=_FETCH_WAIT_MS
        )
        await reader.start()
        try:
            reader.assign(list(start))
            for tp, offset in start.items():
                reader.seek(tp, offset)
            records: list[RawMessage] = []
            while True:
                batches = await reader.getmany(timeout_ms=_FETCH_WAIT_MS * 3)
                fresh = [
                    RawMessage(
                        m.topic, m.partition, m.offset, m.key, m.value, m.timestamp
                    )
                    for messages in batches.values()
                    for m in messages
                    if stop_at is None or m.offset < stop_at.get(m.partition, 0)
                ]
                records.extend(fresh)
                if stop_at is not None:
                    done = [
                        tp
                        for tp in reader.assignment()
                        if await reader.position(tp) >= stop_at.get(tp.partition, 0)
                    ]
                    if done:
                        reader.pause(*done)
                    if len(done) == len(start):
                        return records
                if not batches:
                    return records
        finally:
            await reader.stop()


@dataclass(frozen=True, slots=True)
class GroupLag:
    """How far a group is behind on a topic, measured from outside the group."""

    by_partition: dict[int, int]
    #: Kafka timestamp (Unix s) of the oldest record not yet consumed (None: none).
    oldest_waiting_s: float | None


async def group_lag(options: dict[str, Any], topic: str, group_id: str) -> GroupLag:
    """Records after the group's committed offsets, and the oldest one's timestamp.

    A partition the group never committed counts from its beginning. Joins and
    commits nothing; ``BrokerUnavailable`` when Kafka does not answer.
    """
    async with GroupOffsets(options, topic, group_id) as offsets:
        beginning = await offsets.beginning_offsets()
        ends = await offsets.end_offsets()
        committed = await offsets.committed()
        start = {
            p: committed.get(p) if committed.get(p) is not None else beginning[p]
            for p in ends
        }
        lags = {p: max(0, ends[p] - int(start[p] or 0)) for p in sorted(ends)}
        waiting = {p: int(start[p] or 0) for p, n in lags.items() if n}
        heads = await offsets.read(waiting, {p: o + 1 for p, o in waiting.items()})
    oldest = min((r.timestamp_ms for r in heads), default=None)
    return GroupLag(lags, None if oldest is None else oldest / 1000)
