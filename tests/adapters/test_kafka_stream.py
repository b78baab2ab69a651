"""The consumer's Kafka adapter: what a rebalance does to a member."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from connectors.kafka.stream import KafkaEventConsumer, _AssignmentListener


class TestAssignmentListener:
    """A member reloads its tables on every assignment and lets go only between writes."""

    async def test_every_assignment_asks_for_the_tables_again(self) -> None:
        """The first one too (a member joining read them before the others let go),
        and the same partitions again (after an eviction another member held them)."""
        listener = _AssignmentListener()
        await listener.on_partitions_assigned({("events", 0), ("events", 1)})
        assert listener.changed is True
        listener.changed = False
        await listener.on_partitions_revoked({("events", 0), ("events", 1)})
        await listener.on_partitions_assigned({("events", 0), ("events", 1)})
        assert listener.changed is True

    async def test_revocation_waits_for_the_write_turn_in_flight(self) -> None:
        """The partitions go only once the batch in flight ended; no new write starts."""
        listener = _AssignmentListener()
        await listener.on_partitions_assigned({("events", 0)})
        epoch = listener.epoch
        await listener.turn.acquire()  # a batch is being applied
        revoking = asyncio.create_task(listener.on_partitions_revoked({("events", 0)}))
        await asyncio.sleep(0)  # let the revocation start and block
        assert listener.revoking is True
        assert listener.epoch != epoch  # the batch's writes are fenced from here
        assert not revoking.done()
        listener.turn.release()  # the batch recorded its outcomes and committed
        await revoking
        await listener.on_partitions_assigned({("events", 1)})
        assert listener.revoking is False


class _RevokedWhileReadingEnds:
    """aiokafka's consumer as a rebalance leaves it: partition 1 is revoked while
    the end offsets are read, and ``position`` refuses a partition not assigned."""

    def __init__(self) -> None:
        self.held = {TopicPartition("events", 0), TopicPartition("events", 1)}

    def assignment(self) -> set[TopicPartition]:
        return set(self.held)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends = dict.fromkeys(tps, 10)
        self.held.discard(TopicPartition("events", 1))
        return ends

    async def position(self, tp: TopicPartition) -> int:
        if tp not in self.held:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        return 4


class TestLag:
    """The lag a member reports is never a reason for it to exit."""

    async def test_a_partition_revoked_while_measuring_is_left_out(self) -> None:
        """A rebalance between the end offsets and the positions (seen in the fault
        matrix: a member left mid-burst and the other exited with status 1)."""
        stream = KafkaEventConsumer({}, "events", "group")
        stream._started = _RevokedWhileReadingEnds()
        assert await stream.lags() == {0: 6}
        assert await stream.lag() == 6
