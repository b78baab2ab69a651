"""The consumer's Kafka adapter: rebalance notices."""

from __future__ import annotations

from connectors.kafka.stream import _AssignmentListener


class TestAssignmentListener:
    """The consumer notices a rebalance that changed its partitions."""

    async def test_first_assignment_is_not_a_change(self) -> None:
        """Start-up assignment: the tables were just loaded, nothing to reload."""
        listener = _AssignmentListener()
        await listener.on_partitions_assigned({("events", 0), ("events", 1)})
        assert listener.changed is False
        await listener.on_partitions_assigned({("events", 0), ("events", 1)})
        assert listener.changed is False
        await listener.on_partitions_assigned({("events", 0)})
        assert listener.changed is True
