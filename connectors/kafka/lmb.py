"""The LMB source's Kafka adapter: events, the compacted state topic, dead letters.

``KafkaLmbSink`` implements the LMB ports (``lmb/ports.py``) on one acknowledged
producer: every call returns only once the broker acknowledged all its records
(``acks="all"``), or raises ``lmb.errors.PublishFailed`` and the intake answers
LMB with an error so it sends the message again. ``load_lmb_state`` reads the
state topic as a table (latest value per key: compaction may not have run).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.kafka.producer import AckedProducer
from connectors.kafka.stream import read_topic
from consumers.errors import BrokerUnavailable
from lmb.book import Book
from lmb.errors import PublishFailed, StateUnavailable
from schemas.events import EnrolmentEvent
from schemas.lmb import LmbDeadLetter

__all__ = ["KafkaLmbSink", "load_lmb_state"]


class KafkaLmbSink(AckedProducer):
    """The LMB source's writes: events, state records and dead letters, acknowledged."""

    failure = PublishFailed

    def __init__(
        self,
        options: dict[str, Any],
        *,
        events_topic: str,
        state_topic: str,
        dead_letter_topic: str,
        ack_timeout_s: float = 30.0,
        enable_idempotence: bool = False,
    ) -> None:
        super().__init__(
            options,
            ack_timeout_s=ack_timeout_s,
            enable_idempotence=enable_idempotence,
            linger_ms=2,
        )
        self.events_topic = events_topic
        self.state_topic = state_topic
        self.dead_letter_topic = dead_letter_topic

    async def publish(self, events: Sequence[EnrolmentEvent]) -> None:
        """Send the events keyed by person, acknowledged."""
        await self.send_all(
            self.events_topic,
            [(e.kafka_key(), e.model_dump_json().encode()) for e in events],
        )

    async def save(self, rows: Sequence[tuple[bytes, bytes]]) -> None:
        """Write state records (compacted topic), acknowledged."""
        await self.send_all(self.state_topic, list(rows))

    async def dead_letter(self, letter: LmbDeadLetter) -> None:
        """Append one dead letter keyed by its message key, acknowledged."""
        await self.send_all(
            self.dead_letter_topic,
            [(letter.message_key.encode(), letter.model_dump_json().encode())],
        )


async def load_lmb_state(options: dict[str, Any], topic: str) -> tuple[Book, list[str]]:
    """The book as the state topic holds it, and the keys that could not be read."""
    try:
        records = await read_topic(options, topic)
    except BrokerUnavailable as exc:
        raise StateUnavailable(str(exc)) from exc
    table: dict[bytes, bytes] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.key is None:
            continue
        if record.value is None:
            table.pop(record.key, None)
        else:
            table[record.key] = record.value
    return Book.load(table)
