"""The lease's assignor: a rebalance leaves the lease with its holder."""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.protocol import (
    ConsumerProtocol,
    ConsumerProtocolMemberMetadata,
)

from connectors.kafka.lease import LeaseAssignor

TOPIC = "events.poller-lease"


class Cluster:
    """The one thing the assignor asks of aiokafka's cluster metadata."""

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0} if topic == TOPIC else None


def joined(epoch: int) -> Any:
    """A member's join metadata as the leader decodes it off the wire."""
    metadata = LeaseAssignor(lambda: epoch).metadata([TOPIC])
    return ConsumerProtocol.METADATA.decode(metadata.encode())


def holder(members: dict[str, Any]) -> list[str]:
    """The members assigned the lease partition."""
    assignment = LeaseAssignor(lambda: 0).assign(Cluster(), members)
    return [
        member
        for member, given in assignment.items()
        if any(0 in partitions for _, partitions in given.assignment)
    ]


class TestLeaseAssignor:
    """The member that held the latest lease gets the partition."""

    def test_the_holder_keeps_it_when_a_fenced_poller_rejoins(self) -> None:
        """The fenced one (epoch 2) sorts first by member id; the holder (3) keeps it."""
        assert holder({"a-woken": joined(2), "b-holder": joined(3)}) == ["b-holder"]

    def test_a_new_standby_does_not_take_it(self) -> None:
        """A poller that never held the lease (epoch 0) joins beside the holder."""
        assert holder({"a-new": joined(0), "b-holder": joined(5)}) == ["b-holder"]

    def test_first_start_goes_to_the_lowest_member_id(self) -> None:
        """No one held it: one member, deterministically."""
        assert holder({"b": joined(0), "a": joined(0)}) == ["a"]

    def test_a_member_without_an_epoch_counts_as_never_held(self) -> None:
        """Missing or garbled user data never wins over a member that held it."""
        assert holder(
            {
                "a": ConsumerProtocolMemberMetadata(0, [TOPIC], b""),
                "b": joined(1),
                "c": ConsumerProtocolMemberMetadata(0, [TOPIC], b"\xff"),
            }
        ) == ["b"]
