"""Ports of the LMB source: what the intake needs from the world, as Protocols.

Implemented by ``connectors/kafka/lmb.py`` (events, state and dead letters, each
call returning only once Kafka acknowledged) and ``connectors/local/message_log.py``
(the dated message log). Tests use in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from schemas.events import EnrolmentEvent
from schemas.lmb import LmbDeadLetter

Row = tuple[bytes, bytes]


class EventPublisher(Protocol):
    """The enrolment event topic."""

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send the events keyed by person; return once acknowledged, else ``PublishFailed``."""
        ...


class StateWriter(Protocol):
    """The compacted state topic."""

    async def save(self, rows: Sequence[Row]) -> None:
        """Write (key, value) records; return once acknowledged, else ``PublishFailed``."""
        ...


class DeadLetterSink(Protocol):
    """The LMB dead-letter topic."""

    async def dead_letter(self, letter: LmbDeadLetter) -> None:
        """Append one dead letter; return once acknowledged, else ``PublishFailed``."""
        ...


class MessageLog(Protocol):
    """Every message as received and what became of it (student data: 0600)."""

    async def append(self, entry: Mapping[str, object]) -> None:
        """Append one entry to the day's log."""
        ...
