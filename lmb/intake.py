"""The LMB intake: one message in, its events acknowledged by Kafka, then the answer.

``LmbIntake.receive`` handles one POSTed message, one at a time (LMB sends in
order, and a person's messages must be applied in that order):

1. log the message as received (the dated message log);
2. parse it (``MessageRejected``: dead-letter it whole, answer ``dead_lettered``);
3. apply it to the book (pure, ``lmb.apply``); every object seen before: answer
   ``duplicate``;
4. publish its events and wait for Kafka's acknowledgements; then save the
   changed records to the state topic, acknowledged; only then update the book;
5. dead-letter what could not be applied (with the whole message), log the
   outcome, answer ``applied``.

Nothing is answered before Kafka acknowledged, so LMB's retry after any failure
or crash redoes the message: ``PublishFailed`` propagates (the endpoint answers
503 and LMB sends again). Events go before the state on purpose: a crash between
the two leaves the state as it was, so the retry computes the same events (same
ids: consumers apply state, so a second copy changes nothing) and then saves
the state. The other order would mark the message applied without its events.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import structlog

from lmb.apply import apply_message
from lmb.book import Book, state_rows
from lmb.errors import MessageRejected
from lmb.events import Received
from lmb.messages import ImsMessage
from lmb.ports import DeadLetterSink, EventPublisher, MessageLog, StateWriter
from schemas.lmb import LmbDeadLetter

log = structlog.get_logger()

Answer = Literal["applied", "duplicate", "dead_lettered"]
_LOGGED: dict[Answer, str] = {
    "applied": "lmb_message_applied",
    "duplicate": "lmb_message_duplicate",
    "dead_lettered": "lmb_message_dead_lettered",
}


def message_key(message_id: str | None, body: bytes) -> str:
    """A message's identity: its RDI message id and its content (sha256)."""
    digest = hashlib.sha256((message_id or "").encode() + b"\n" + body)
    return digest.hexdigest()


def _no_crash(_: str) -> None:
    """The default crash point: none."""


@dataclass(frozen=True, slots=True)
class _Incoming:
    body: bytes
    received: Received
    message_id: str | None
    seqno: str | None


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of one message."""

    answer: Answer
    events: int = 0
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


class LmbIntake:
    """Applies LMB's messages in order; see the module docstring for the contract."""

    def __init__(
        self,
        *,
        parse: Callable[[bytes], ImsMessage],
        book: Book,
        publisher: EventPublisher,
        state: StateWriter,
        dead_letters: DeadLetterSink,
        message_log: MessageLog,
        source: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        crash_point: Callable[[str], None] = _no_crash,
    ) -> None:
        self.parse = parse
        self.book = book
        self.publisher = publisher
        self.state = state
        self.dead_letters = dead_letters
        self.message_log = message_log
        self.source = source
        self.clock = clock
        self.crash_point = crash_point
        self._one_at_a_time = asyncio.Lock()

    async def receive(
        self, body: bytes, *, message_id: str | None, seqno: str | None
    ) -> Receipt:
        """Apply one message; returns once Kafka holds everything it changed."""
        async with self._one_at_a_time:
            received = Received(
                key=message_key(message_id, body),
                received_at=self.clock(),
                source=self.source,
            )
            with structlog.contextvars.bound_contextvars(
                message_id=message_id, seqno=seqno, message_key=received.key[:16]
            ):
                await self.message_log.append(
                    {
                        "entry": "received",
                        "at": received.received_at.isoformat(),
                        "message_key": received.key,
                        "message_id": message_id,
                        "seqno": seqno,
                        "body": body.decode(errors="replace"),
                    }
                )
                incoming = _Incoming(body, received, message_id, seqno)
                receipt = await self._apply(incoming)
                await self.message_log.append(
                    {
                        "entry": "answered",
                        "at": self.clock().isoformat(),
                        "message_key": received.key,
                        "answer": receipt.answer,
                        "events": receipt.events,
                        "reasons": list(receipt.reasons),
                    }
                )
                log.info(
                    _LOGGED[receipt.answer],
                    events=receipt.events,
                    reasons=list(receipt.reasons),
                    notes=list(receipt.notes),
                )
                return receipt

    async def _apply(self, incoming: _Incoming) -> Receipt:
        try:
            message = self.parse(incoming.body)
        except MessageRejected as exc:
            reasons: tuple[str, ...] = (str(exc),)
            await self._dead_letter(incoming, exc, reasons)
            return Receipt("dead_lettered", reasons=reasons)
        outcome = apply_message(message, self.book, incoming.received)
        if outcome.duplicate:
            return Receipt("duplicate")
        await self.publisher.publish(outcome.events)
        self.crash_point("lmb_events_published")
        await self.state.save(
            state_rows(outcome.people.values(), outcome.groups.values())
        )
        self.book.update(outcome.people.values(), outcome.groups.values())
        reasons = tuple(outcome.rejected)
        if reasons:
            error = MessageRejected("some objects could not be applied")
            await self._dead_letter(incoming, error, reasons)
        return Receipt(
            "applied",
            events=len(outcome.events),
            reasons=reasons,
            notes=tuple(outcome.notes),
        )

    async def _dead_letter(
        self, incoming: _Incoming, error: MessageRejected, reasons: tuple[str, ...]
    ) -> None:
        await self.dead_letters.dead_letter(
            LmbDeadLetter(
                message_key=incoming.received.key,
                message_id=incoming.message_id,
                seqno=incoming.seqno,
                error_type=type(error).__name__,
                reasons=reasons,
                body=incoming.body.decode(errors="replace"),
                received_at=incoming.received.received_at,
            )
        )
