"""The poller's lease: membership of a consumer group, fenced by the group's generation.

Every poller joins the group ``poller.lease_group`` on a one-partition lease
topic. The member the group assigns that partition is the active poller; the
others stand by, members too, so the coordinator hands the partition to one of
them once the active one leaves (SIGTERM) or stops heartbeating (kill -9, a
frozen VM, a lost network): within ``poller.lease_timeout_s``.

Fencing: ``confirm`` commits the lease epoch as the group's offset. The broker
refuses an offset commit from a member that is not in the current generation
(``UNKNOWN_MEMBER_ID``, ``ILLEGAL_GENERATION``, ``REBALANCE_IN_PROGRESS``), and
aiokafka, which may quietly rejoin in the background, would then carry another
member id or generation: either way ``confirm`` raises ``LeaseLost``. The poller
confirms before it writes state and before it publishes, so a poller that was
frozen past its session cannot write after the standby took over.

Who gets the partition: the group's leader assigns it with ``LeaseAssignor``,
to the member that reports the highest lease epoch it has held. The holder's
epoch is the highest there is, so a rebalance (a standby started, a fenced
poller rejoining after it woke) leaves the lease where it is; aiokafka's default
round-robin would hand it to whichever member id sorts first, and a poller
fenced a moment ago could take the lease straight back from the one that
replaced it.

Works alike on Apache Kafka and the embedded broker (which has no transactions
and numbers generations from 0). The epoch is the group's committed offset plus
one: a number each holding raises, written in the state records' headers.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from cdc.errors import LeaseLost, PublishFailed
from connectors.kafka.producer import describe_kafka_failure
from connectors.kafka.stream import _leave_even_at_generation_zero

log = structlog.get_logger()
_WAIT_MS = 250
_LEAVE_S = 5.0


def holder_name() -> str:
    """Who holds the lease, for logs and the group's offset metadata."""
    return f"{socket.gethostname()}/{os.getpid()}"


_EPOCH = struct.Struct(">q")


class LeaseAssignor:
    """Assigns the lease topic to the member that held the latest lease.

    Each member's join metadata carries the highest lease epoch it has held (0
    if none); the leader gives every partition to the highest, ties to the
    first member id. aiokafka calls ``name``, ``metadata``, ``assign`` and
    ``on_assignment`` on whatever it is given as an assignor: an instance keeps
    the lease's epoch at hand.
    """

    name = "enrolstream-lease"
    version = 0

    def __init__(self, epoch: Callable[[], int]) -> None:
        self._epoch = epoch

    def metadata(self, topics: Iterable[str]) -> Any:
        """This member's subscription, its epoch as the user data."""
        return ConsumerProtocolMemberMetadata(
            self.version, sorted(topics), _EPOCH.pack(self._epoch())
        )

    def assign(self, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
        """Every partition of the subscribed topics to the latest holder."""

        def epoch(member: str) -> int:
            data = members[member].user_data or b""
            return _EPOCH.unpack(data)[0] if len(data) == _EPOCH.size else -1

        holder = min(members, key=lambda member: (-epoch(member), member))
        topics = sorted({t for m in members.values() for t in m.subscription})
        held = [
            (topic, sorted(cluster.partitions_for_topic(topic) or ()))
            for topic in topics
        ]
        return {
            member: ConsumerProtocolMemberAssignment(
                self.version, held if member == holder else [], b""
            )
            for member in members
        }

    def on_assignment(self, assignment: Any) -> None:
        """Nothing to keep: the epoch is the lease's."""


class KafkaLease:
    """A member of the lease group; holds the lease while assigned partition 0."""

    def __init__(
        self,
        options: dict[str, Any],
        topic: str,
        group_id: str,
        *,
        session_timeout_s: float,
    ) -> None:
        self.topic = topic
        self.group_id = group_id
        self._tp = TopicPartition(topic, 0)
        self._options = {
            **options,
            "group_id": group_id,
            "client_id": f"enrolstream-poller-{holder_name()}",
            "session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": max(100, int(session_timeout_s * 1000 / 3)),
            "enable_auto_commit": False,
            # Only this one: aiokafka 0.14 sends one JoinGroup per assignor listed
            # (its loop over them wraps the request), each a rebalance round, and
            # a second protocol would only serve a poller without this assignor.
            "partition_assignment_strategy": (LeaseAssignor(lambda: self._epoch),),
            # confirm() polls; a poller stuck longer than this is restarted by
            # its liveness probe anyway
            "max_poll_interval_ms": 3_600_000,
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._held: tuple[int, str] | None = None
        self._epoch = 0

    async def __aenter__(self) -> Self:
        self._consumer = AIOKafkaConsumer(**self._options)
        self._consumer.subscribe([self.topic])
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise PublishFailed(
                describe_kafka_failure(exc, self._options.get("bootstrap_servers"))
            ) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._consumer is not None:
            # Leave now (not after the session timeout): the standby takes over
            # as soon as the group rebalances. Bounded: a coordinator that does
            # not answer must not keep a stopping poller alive.
            _leave_even_at_generation_zero(self._consumer)
            try:
                async with asyncio.timeout(_LEAVE_S):
                    await self._consumer.stop()
            except TimeoutError:
                log.warning("lease_leave_timed_out", group=self.group_id)
        self._held = None

    @property
    def epoch(self) -> int:
        """This holding's number (0 before the first)."""
        return self._epoch

    def _membership(self) -> tuple[int, str]:
        coordinator = getattr(self._started, "_coordinator", None)
        return (
            int(getattr(coordinator, "generation", -1)),
            str(getattr(coordinator, "member_id", "")),
        )

    @property
    def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("use the lease inside `async with`")
        return self._consumer

    async def acquire(
        self, stop: asyncio.Event, *, waiting: Callable[[], None] = lambda: None
    ) -> bool:
        """Stand by until this member holds the lease (True) or ``stop`` is set.

        ``waiting`` is called about every quarter second (the liveness heartbeat).
        """
        self._held = None
        announced = False
        while not stop.is_set():
            waiting()
            try:
                await self._started.getmany(timeout_ms=_WAIT_MS)
            except KafkaError as exc:
                log.warning("lease_wait_failed", error=str(exc))
                await asyncio.sleep(_WAIT_MS / 1000)
                continue
            generation, member = self._membership()
            if self._tp in self._started.assignment() and member and generation >= 0:
                try:
                    await self._claim((generation, member))
                except LeaseLost:
                    continue  # the group moved on meanwhile: stand by again
                return True
            if not announced:
                log.info("standing_by", group=self.group_id, holder=holder_name())
                announced = True
        return False

    async def _claim(self, membership: tuple[int, str]) -> None:
        try:
            previous = await self._started.committed(self._tp)
        except KafkaError as exc:
            raise PublishFailed(f"cannot read the lease epoch: {exc}") from exc
        self._held = membership
        self._epoch = max(self._epoch, int(previous or 0)) + 1
        await self.confirm()
        log.warning(
            "lease_acquired",
            group=self.group_id,
            epoch=self._epoch,
            generation=membership[0],
            holder=holder_name(),
        )

    async def confirm(self) -> None:
        """``LeaseLost`` unless this member still holds the lease, checked by the broker."""
        if self._held is None:
            raise LeaseLost("the lease is not held")
        consumer = self._started
        lost = None
        if self._membership() != self._held or self._tp not in consumer.assignment():
            lost = "the group rebalanced"
        else:
            try:
                await consumer.getmany(timeout_ms=0)  # keeps the member polling
                await consumer.commit(
                    {self._tp: OffsetAndMetadata(self._epoch, holder_name())}
                )
            except CommitFailedError:
                lost = "the broker refused this member's generation"
            except KafkaError as exc:
                raise PublishFailed(f"cannot confirm the lease: {exc}") from exc
            if lost is None and self._membership() != self._held:
                lost = "the group rebalanced"
        if lost is not None:
            self._held = None
            raise LeaseLost(f"lease {self._epoch} lost: {lost}")
