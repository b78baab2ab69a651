"""The apply side's typed errors. Whether a retry is safe is a property of the type.

::

    ConsumerError
    ├── TargetError                 a call to the apply target (Moodle) failed
    │   ├── TargetUnavailable       retriable: no usable answer; the outcome of a
    │   │                           write is unknown (it may have been applied)
    │   ├── TargetRefused           the target refuses us (token, service, a
    │   │                           missing plugin): an operator must act
    │   └── ActionRejected          that action cannot be applied (rolled back);
    │                               dead-letter it. ``row_level``: splitting a
    │                               batch can isolate it
    ├── MappingError(file, key, problem)  the mapping file must be fixed
    ├── InvalidEvent(reason)        dead-letter the record, the partition moves on
    ├── StartupRefused              the settings ask what the target cannot do
    ├── LiveConsumerRefused         ledger writers refuse while ``consume`` runs
    ├── SnapshotUnavailable         no usable snapshot (``consumers.reconcile``)
    ├── ReplayError                 ``consumers.replay``: refused or bad offsets
    ├── BrokerUnavailable           retriable: Kafka did not answer or ack
    └── PartitionsRevoked           a rebalance took (or is taking) the batch's
                                    partitions: stop writing, drop the batch

The Moodle adapter's errors (``connectors.moodle.errors``) subclass the target
categories: ``MoodleUnavailable`` is a ``TargetUnavailable``, ``MoodleRejected``
an ``ActionRejected``, and so on. The domain branches on the categories (and on
``retriable``), never on Moodle's types or on message text.

For a write, every error but an ``ActionRejected`` pinned on its row leaves the
outcome unknown: the consumer records each write's intent first, so the next
decision for those rows reads what Moodle holds instead of trusting the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

__all__ = [
    "ActionRejected",
    "BrokerUnavailable",
    "ConsumerError",
    "InvalidEvent",
    "LiveConsumerRefused",
    "MappingError",
    "PartitionsRevoked",
    "StartupRefused",
    "TargetError",
    "TargetRefused",
    "TargetUnavailable",
]


class ConsumerError(Exception):
    """Root of every error the consumer side raises on purpose."""

    retriable: ClassVar[bool] = False


class TargetError(ConsumerError):
    """A call to the apply target (Moodle's web services) failed."""


class TargetUnavailable(TargetError):
    """No usable answer now; the same call may succeed later (outcome unknown)."""

    retriable: ClassVar[bool] = True


class TargetRefused(TargetError):
    """The target refuses us (token, service, a missing plugin): an operator acts."""


class ActionRejected(TargetError):
    """The target refused this action's content; it was rolled back.

    ``row_level``: one bad row can cause it, so splitting a batch isolates the
    culprit. ``person_may_be_gone``: the refusal may mean the user account no
    longer exists (merged or recreated): the person is looked up again.
    """

    row_level: ClassVar[bool] = True
    person_may_be_gone: ClassVar[bool] = False
    #: The target's code for the refusal (Moodle's ``errorcode``), for reports.
    errorcode: str


class MappingError(ConsumerError):
    """A mapping file is wrong; the message names the file, the key and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(f"{file}: {key}: {problem}")


class InvalidEvent(ConsumerError):
    """An event cannot be acted on; it is dead-lettered and the partition moves on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"invalid event: {reason}")


class StartupRefused(ConsumerError):
    """The settings ask for something this Moodle site cannot do: fix one of them."""


class LiveConsumerRefused(ConsumerError):
    """The apply consumer group has live members: writing the ledger now is unsafe.

    Not retriable by the command itself: an operator stops the consumer (or
    waits for the maintenance window) and runs it again.
    """

    def __init__(
        self, command: str, group: str, state: str, members: Sequence[str]
    ) -> None:
        self.command = command
        self.group = group
        self.state = state
        self.members = tuple(members)
        super().__init__(
            f"{command} refused: consumer group {group!r} is {state} with live "
            f"members {', '.join(members) or '(none listed)'}; both write the "
            "ownership ledger: stop `enrolstream consume` first (or run the "
            "reconcile in its maintenance window)"
        )


class BrokerUnavailable(ConsumerError):
    """Kafka did not answer or acknowledge (fetch, commit, ledger/dead-letter write)."""

    retriable: ClassVar[bool] = True


class PartitionsRevoked(ConsumerError):
    """A rebalance is taking this member's partitions: no new write may start.

    Raised before a write, never after one was sent: the batch is dropped
    uncommitted (the partitions' next owner reads it again) and the writes
    already made are in the ledger, intents first, for that owner to see.
    """

    retriable: ClassVar[bool] = True
